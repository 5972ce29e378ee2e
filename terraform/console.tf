# The review console (console/): its own Cloud Run service, its own runtime account, and access
# for lab staff only. Self-contained: its variables and outputs live in this file.
#
# Access, by var.console_access:
#   "iap"      Identity-Aware Proxy enabled directly on the Cloud Run service (no load balancer).
#              Users sign in with their Google identity; var.console_access_member gets
#              roles/iap.httpsResourceAccessor, and only IAP's service agent may invoke the service.
#              Needs the project to be in an organization, and identities from that organization.
#   "invoker"  No IAP: var.console_access_member gets roles/run.invoker and reaches the console
#              through `gcloud run services proxy <service> --region <region>` (an authenticated
#              tunnel to http://localhost:8080), as docs/CONSOLE.md describes.
# Either way nobody else gets through: no allUsers, no public invoker.
#
# The browser uploads straight to the inbox bucket with V4 signed PUT URLs, so the inbox bucket
# has a CORS rule for the console's origin (storage.tf; output console_cors_origin).

variable "console_service_name" {
  description = "Cloud Run service name of the review console."
  type        = string
  default     = "healer-console"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.console_service_name))
    error_message = "console_service_name must be a valid Cloud Run service name (lower case, digits, dashes; <= 49 chars)."
  }
}

variable "console_image" {
  description = "Container image of the console. Null: <region>-docker.pkg.dev/<project>/<repository_name>/healer-console:latest."
  type        = string
  default     = null
}

variable "console_access" {
  description = "How lab staff reach the console: \"iap\" (Identity-Aware Proxy on Cloud Run) or \"invoker\" (IAM invoker + gcloud run services proxy)."
  type        = string
  default     = "iap"

  validation {
    condition     = contains(["iap", "invoker"], var.console_access)
    error_message = "console_access must be \"iap\" or \"invoker\"."
  }
}

variable "console_access_member" {
  description = "The one principal allowed to use the console, normally a group (e.g. \"group:pathology@example.org\"). Null: nobody yet."
  type        = string
  default     = null

  validation {
    condition = var.console_access_member == null ? true : (
      can(regex("^(group|user|domain|serviceAccount):[^\\s]+$", var.console_access_member))
      && !contains(["allUsers", "allAuthenticatedUsers"], var.console_access_member)
    )
    error_message = "console_access_member must look like group:<email>, user:<email>, domain:<domain> or serviceAccount:<email>; never public."
  }
}

variable "console_max_instances" {
  description = "Upper bound of console instances (it is a light CPU service; requests are short)."
  type        = number
  default     = 3

  validation {
    condition     = var.console_max_instances >= 1 && var.console_max_instances <= 100
    error_message = "console_max_instances must be between 1 and 100."
  }
}

variable "console_upload_url_ttl_seconds" {
  description = "Lifetime of the signed upload URLs the console hands to browsers, in seconds."
  type        = number
  default     = 900

  validation {
    condition     = var.console_upload_url_ttl_seconds >= 60 && var.console_upload_url_ttl_seconds <= 3600
    error_message = "console_upload_url_ttl_seconds must be between 60 and 3600."
  }
}

locals {
  console_iap = var.console_access == "iap" ? 1 : 0
  console_image = coalesce(
    var.console_image,
    "${var.region}-docker.pkg.dev/${var.project_id}/${var.repository_name}/healer-console:latest",
  )
  # Cloud Run's deterministic URL: the origin the inbox bucket's CORS rule must allow.
  console_url = "https://${var.console_service_name}-${local.project_number}.${var.region}.run.app"
  # IAP's service agent, created below when IAP is used.
  iap_agent = local.console_iap == 1 ? "serviceAccount:${google_project_service_identity.iap[0].email}" : ""
}

resource "google_project_service" "console_iap" {
  count = local.console_iap

  project                    = var.project_id
  service                    = "iap.googleapis.com"
  disable_on_destroy         = false
  disable_dependent_services = false
}

resource "google_project_service_identity" "iap" {
  count = local.console_iap

  provider = google-beta
  project  = var.project_id
  service  = "iap.googleapis.com"

  depends_on = [google_project_service.console_iap]
}

resource "google_service_account" "console" {
  project      = var.project_id
  account_id   = "${local.prefix}-console"
  display_name = "Healer review console runtime"

  depends_on = [google_project_service.apis]
}

# Why: the console lists jobs and shows verdicts, read-only; Firestore offers no narrower
# predefined scope than the project.
resource "google_project_iam_member" "console_reads_jobs" {
  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = "serviceAccount:${google_service_account.console.email}"
}

# Why: the runtime account has no private key; it signs upload URLs through IAM signBlob, as
# itself and as no other account.
resource "google_service_account_iam_member" "console_signs_as_itself" {
  service_account_id = google_service_account.console.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.console.email}"
}

# Why: a signed URL carries the signer's permissions; the browser's PUT creates an object in
# the inbox bucket (create only: no overwrite, no delete), and in no other bucket.
resource "google_storage_bucket_iam_member" "console_creates_inbox_objects" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.console.email}"
}

# Why: previews are rendered from the stored object generation of each job.
resource "google_storage_bucket_iam_member" "console_reads_inbox" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.console.email}"
}

# The console's "filter by state, newest first" query.
resource "google_firestore_index" "jobs_by_state_created" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = var.jobs_collection

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

resource "google_cloud_run_v2_service" "console" {
  #checkov:skip=CKV_HEALER_3:Browsers must reach the console; IAP (or IAM invoker via the proxy) gates every request.
  # iap_enabled is a google-beta field in the 6.x providers.
  provider            = google-beta
  project             = var.project_id
  name                = var.console_service_name
  location            = var.region
  description         = "Healer review console: upload slides and review screening verdicts."
  labels              = local.labels
  ingress             = "INGRESS_TRAFFIC_ALL" # reachable from browsers; IAP / IAM decide who gets in
  deletion_protection = var.deletion_protection
  iap_enabled         = var.console_access == "iap"

  template {
    service_account                  = google_service_account.console.email
    labels                           = local.labels
    timeout                          = "60s"
    max_instance_request_concurrency = 40

    scaling {
      min_instance_count = 0
      max_instance_count = var.console_max_instances
    }

    containers {
      image = local.console_image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi" # decoding a large TIFF for a preview needs headroom
        }
        cpu_idle = true
      }

      env {
        name  = "PROJECT_ID"
        value = var.project_id
      }
      env {
        name  = "HEALER_BUCKET"
        value = google_storage_bucket.inbox.name
      }
      env {
        name  = "JOBS_COLLECTION"
        value = var.jobs_collection
      }
      env {
        name  = "FIRESTORE_DATABASE"
        value = google_firestore_database.main.name
      }
      env {
        name  = "MAX_IMAGE_BYTES"
        value = tostring(var.max_image_bytes)
      }
      env {
        name  = "SIGNER_SERVICE_ACCOUNT"
        value = google_service_account.console.email
      }
      env {
        name  = "UPLOAD_URL_TTL_SECONDS"
        value = tostring(var.console_upload_url_ttl_seconds)
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        failure_threshold = 15
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.console_reads_jobs,
    google_storage_bucket_iam_member.console_reads_inbox,
  ]
}

# Why (IAP): IAP forwards authenticated requests with its own identity; Cloud Run's IAM check
# must admit IAP's agent, and only it.
resource "google_cloud_run_v2_service_iam_member" "iap_invokes_console" {
  count = local.console_iap

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.console.name
  role     = "roles/run.invoker"
  member   = local.iap_agent
}

# Why (IAP): the lab group may pass IAP for this one service.
# The project NUMBER, not the id: IAP's web resources are keyed by number, and with the id the
# binding is reported created but never admits anyone (hashicorp/terraform-provider-google#23092).
resource "google_iap_web_cloud_run_service_iam_member" "console_users" {
  count = local.console_iap == 1 && var.console_access_member != null ? 1 : 0

  provider               = google-beta
  project                = local.project_number
  location               = var.region
  cloud_run_service_name = google_cloud_run_v2_service.console.name
  role                   = "roles/iap.httpsResourceAccessor"
  member                 = var.console_access_member
}

# Why (invoker): without IAP, the lab group invokes the service directly (via the proxy).
resource "google_cloud_run_v2_service_iam_member" "console_invokers" {
  count = var.console_access == "invoker" && var.console_access_member != null ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.console.name
  role     = "roles/run.invoker"
  member   = var.console_access_member
}

output "console_url" {
  description = "URL of the review console (behind IAP, or reachable only through `gcloud run services proxy`)."
  value       = local.console_url
}

output "console_cors_origin" {
  description = "Origin the inbox bucket's CORS rule must allow for browser uploads (method PUT, header Content-Type)."
  value       = local.console_url
}

output "console_service_account" {
  description = "Runtime service account of the console (reads jobs, signs uploads as itself, creates and reads inbox objects)."
  value       = google_service_account.console.email
}

output "console_access_command" {
  description = "How to open the console."
  value = (
    var.console_access == "iap"
    ? "open ${local.console_url} (sign in as a member of ${coalesce(var.console_access_member, "<console_access_member>")})"
    : "gcloud run services proxy ${var.console_service_name} --project ${var.project_id} --region ${var.region} --port 8090  # then open http://localhost:8090"
  )
}
