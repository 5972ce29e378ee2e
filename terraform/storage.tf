# Buckets: the inbox users upload to, and the private bucket holding the function source zip.

resource "google_storage_bucket" "inbox" {
  name     = local.inbox_bucket_name
  project  = var.project_id
  location = var.region
  labels   = local.labels

  # Access only through IAM (no object ACLs), and never public whatever IAM says.
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = var.inbox_versioning
  }

  # The review console's browser uploads straight to the bucket: one PUT to a V4 signed URL for an
  # image, chunked PUTs (Content-Range) to a resumable session for a slide, whose 308 answers say
  # in `Range` how much arrived. Allow exactly that origin, method and those headers.
  cors {
    origin          = [local.console_url]
    method          = ["PUT"]
    response_header = ["Content-Type", "Content-Range", "Range"]
    max_age_seconds = 3600
  }

  dynamic "encryption" {
    for_each = var.inbox_kms_key_name == null ? [] : [var.inbox_kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.inbox_lifecycle_rules
    content {
      action {
        type          = lifecycle_rule.value.action.type
        storage_class = lifecycle_rule.value.action.storage_class
      }
      condition {
        age                        = lifecycle_rule.value.condition.age
        created_before             = lifecycle_rule.value.condition.created_before
        with_state                 = lifecycle_rule.value.condition.with_state
        matches_prefix             = lifecycle_rule.value.condition.matches_prefix
        matches_suffix             = lifecycle_rule.value.condition.matches_suffix
        num_newer_versions         = lifecycle_rule.value.condition.num_newer_versions
        days_since_noncurrent_time = lifecycle_rule.value.condition.days_since_noncurrent_time
      }
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.gcs_agent_cmek]
}

# Why: with CMEK, Cloud Storage's agent encrypts and decrypts objects with the key; scoped to
# that one key.
resource "google_kms_crypto_key_iam_member" "gcs_agent_cmek" {
  count = var.inbox_kms_key_name == null ? 0 : 1

  crypto_key_id = var.inbox_kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.gcs_agent
}

# Source archives of the functions. Private, object names carry the content hash.
resource "google_storage_bucket" "function_source" {
  name     = local.function_bucket_name
  project  = var.project_id
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  # Old bundles are useless once a newer one is deployed; keep a month for rollbacks.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = 30
    }
  }

  depends_on = [google_project_service.apis]
}
