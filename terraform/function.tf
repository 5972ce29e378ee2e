# The ingest function (Cloud Functions gen2): upload event → Firestore job → Pub/Sub message.
# Deployed from the self-contained bundle that `make function-bundle` writes to build/function/
# (ingest_function/ + a copy of healer_core/). The reconcile function (reconcile.tf) is built
# from the same archive.

data "archive_file" "function_bundle" {
  type        = "zip"
  source_dir  = "${path.module}/${var.function_bundle_dir}"
  output_path = "${path.module}/${var.function_bundle_dir}/../function.zip"
}

# The content hash is in the object name: a code change is a new object, which changes the
# function's source and redeploys it; an unchanged bundle changes nothing.
resource "google_storage_bucket_object" "function_source" {
  name   = "healer-function-${data.archive_file.function_bundle.output_sha256}.zip"
  bucket = google_storage_bucket.function_source.name
  source = data.archive_file.function_bundle.output_path
}

locals {
  # Environment shared by both entry points of the bundle (names read by ingest_function).
  function_env = {
    PROJECT_ID         = var.project_id
    JOBS_TOPIC         = google_pubsub_topic.jobs.name
    SLIDES_TOPIC       = google_pubsub_topic.slides.name # slide jobs (tile) and the sweep's finalize
    JOBS_COLLECTION    = var.jobs_collection
    FIRESTORE_DATABASE = google_firestore_database.main.name
    MAX_IMAGE_BYTES    = tostring(var.max_image_bytes)
    MAX_SLIDE_BYTES    = tostring(var.max_slide_bytes)
    JOB_TTL_DAYS       = tostring(var.job_ttl_days)
    HEALER_BUCKET      = google_storage_bucket.inbox.name
    LOG_LEVEL          = "INFO"
  }
}

resource "google_service_account" "ingest" {
  project      = var.project_id
  account_id   = "${local.prefix}-ingest"
  display_name = "Healer ingest function runtime"

  depends_on = [google_project_service.apis]
}

# Why: ingest creates jobs/{job_id} and records that it published. Firestore IAM has no
# per-collection scope: datastore.user on the project is the narrowest predefined role.
resource "google_project_iam_member" "ingest_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.ingest.email}"
}

# Why: ingest publishes one message per job to the jobs topic, and only there.
resource "google_pubsub_topic_iam_member" "ingest_publishes_jobs" {
  project = var.project_id
  topic   = google_pubsub_topic.jobs.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.ingest.email}"
}

# Why: a slide job goes to the slides topic (the slide service tiles it), not to jobs.
resource "google_pubsub_topic_iam_member" "ingest_publishes_slides" {
  project = var.project_id
  topic   = google_pubsub_topic.slides.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.ingest.email}"
}

# Why: ingest reads object metadata (size, content type, generation) of uploads and a ranged read
# of their first bytes (image or slide? never a full download), in the inbox bucket only.
resource "google_storage_bucket_iam_member" "ingest_reads_inbox" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.ingest.email}"
}

resource "google_cloudfunctions2_function" "ingest" {
  project     = var.project_id
  name        = "${local.prefix}-ingest"
  location    = var.region
  description = "Turns each new object generation in the inbox bucket into a Firestore job and a Pub/Sub message."
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = "ingest"
    service_account = google_service_account.function_build.id
    # Our own repository, so the build account's writer grant is scoped to it (build.tf).
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory               = var.function_memory
    timeout_seconds                = 60
    min_instance_count             = 0
    max_instance_count             = var.ingest_max_instances
    service_account_email          = google_service_account.ingest.email
    environment_variables          = local.function_env
    all_traffic_on_latest_revision = true
    # Eventarc deliveries count as internal traffic; nothing else needs to reach the function.
    ingress_settings = "ALLOW_INTERNAL_ONLY"
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    service_account_email = google_service_account.eventarc_trigger.email
    # Raising in the handler means "try again" (transient Firestore/Pub/Sub faults); the handler
    # is idempotent per generation, so redelivery is safe.
    retry_policy = "RETRY_POLICY_RETRY"

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.inbox.name
    }
  }

  depends_on = [
    time_sleep.agent_iam_propagation,
    google_project_iam_member.function_build_logs,
    google_artifact_registry_repository_iam_member.function_build_writes_images,
    google_storage_bucket_iam_member.function_build_reads_source,
  ]
}
