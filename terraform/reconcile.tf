# Reconciliation sweep: a second function from the same bundle (entry point `reconcile`, HTTP
# POST) that lists the inbox bucket and creates + publishes any job whose event was lost.
# Cloud Scheduler calls it every 15 minutes by default, authenticated with its own account.

resource "google_service_account" "reconcile" {
  project      = var.project_id
  account_id   = "${local.prefix}-reconcile"
  display_name = "Healer reconcile function runtime"

  depends_on = [google_project_service.apis]
}

# Why: reconcile reads jobs to find missing ones and creates them (create-if-absent); Firestore
# has no narrower predefined scope than the project.
resource "google_project_iam_member" "reconcile_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.reconcile.email}"
}

# Why: reconcile publishes the messages of the image jobs it recreates, and its sweep
# republishes stuck slide shards, to the jobs topic.
resource "google_pubsub_topic_iam_member" "reconcile_publishes_jobs" {
  project = var.project_id
  topic   = google_pubsub_topic.jobs.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.reconcile.email}"
}

# Why: the slide jobs reconcile recreates (tile) and the finalize of a slide whose publish was
# lost go to the slides topic.
resource "google_pubsub_topic_iam_member" "reconcile_publishes_slides" {
  project = var.project_id
  topic   = google_pubsub_topic.slides.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.reconcile.email}"
}

# Why: reconcile lists the inbox bucket and reads object metadata, in that bucket only.
resource "google_storage_bucket_iam_member" "reconcile_reads_inbox" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.reconcile.email}"
}

resource "google_cloudfunctions2_function" "reconcile" {
  project     = var.project_id
  name        = "${local.prefix}-reconcile"
  location    = var.region
  description = "Sweeps the inbox bucket and recreates jobs whose upload event never produced one."
  labels      = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = "reconcile"
    service_account   = google_service_account.function_build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory      = var.function_memory
    timeout_seconds       = var.reconcile_timeout_seconds
    min_instance_count    = 0
    max_instance_count    = 1 # one sweep at a time; overlapping sweeps would only duplicate work
    service_account_email = google_service_account.reconcile.email
    environment_variables = local.function_env
    # Cloud Scheduler in the same project is internal traffic.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
  }

  depends_on = [
    google_project_iam_member.function_build_logs,
    google_artifact_registry_repository_iam_member.function_build_writes_images,
    google_storage_bucket_iam_member.function_build_reads_source,
  ]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${local.prefix}-scheduler"
  display_name = "Healer Cloud Scheduler (calls the reconcile function)"

  depends_on = [google_project_service.apis]
}

# Why: the scheduler job calls the reconcile function's Cloud Run service with an OIDC token of
# this account; invoker on that one service only.
resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_reconcile" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.reconcile.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_scheduler_job" "reconcile" {
  project          = var.project_id
  region           = var.region
  name             = "${local.prefix}-reconcile"
  description      = "Runs the Healer reconciliation sweep."
  schedule         = var.reconcile_schedule
  time_zone        = var.reconcile_time_zone
  attempt_deadline = "${var.reconcile_timeout_seconds}s"

  retry_config {
    retry_count = 1 # the next sweep comes anyway
  }

  http_target {
    http_method = "POST"
    # The run.app URI: Cloud Scheduler → run.app is internal traffic for an internal-only service.
    uri = google_cloudfunctions2_function.reconcile.service_config[0].uri

    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.reconcile.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_invokes_reconcile]
}
