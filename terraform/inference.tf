# The inference service: Cloud Run v2 with one NVIDIA L4, MedGemma baked into the image.
#
# Ingress is INGRESS_TRAFFIC_INTERNAL_ONLY. Cloud Run's ingress documentation lists the Google
# Cloud products whose requests count as internal when they are in the same project (or VPC-SC
# perimeter) as the service: Cloud Scheduler, Cloud Tasks, Eventarc, Pub/Sub, Workflows,
# BigQuery, synthetic monitors… Pub/Sub push to the run.app URL is therefore accepted, while
# anything from the internet is refused at the network layer before IAM is even consulted.
# (INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER would add an external load balancer path we do not
# need.) Consequence: /predict is reachable only from inside the project's VPC or through an
# internal load balancer, not from a laptop — use the local stack or a VPC host for /predict.
# IAM is the second layer: only the push account holds run.invoker.

resource "google_service_account" "inference" {
  project      = var.project_id
  account_id   = "${local.prefix}-inference"
  display_name = "Healer inference service runtime"

  depends_on = [google_project_service.apis]
}

# Why: the service leases jobs and writes verdicts in Firestore transactions; Firestore has no
# narrower predefined scope than the project.
resource "google_project_iam_member" "inference_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.inference.email}"
}

# Why: the service downloads the uploaded bytes (pinned to the generation) from the inbox
# bucket, and from no other bucket.
resource "google_storage_bucket_iam_member" "inference_reads_inbox" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.inference.email}"
}

# Why: the service scores slide shards, reading each shard object from the work bucket (read
# only: the shard's scores go to Firestore, nothing is written back).
resource "google_storage_bucket_iam_member" "inference_reads_work" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.inference.email}"
}

# Why: counting a slide's last shard publishes its finalize message to the slides topic, for the
# slide service; no other publish of the slide path is the inference service's.
resource "google_pubsub_topic_iam_member" "inference_publishes_slides" {
  project = var.project_id
  topic   = google_pubsub_topic.slides.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.inference.email}"
}

# Why: the dead-letter route puts a job that was never really run (its attempts spent on busy or
# held answers) back in flight with a fresh message on the jobs topic.
resource "google_pubsub_topic_iam_member" "inference_republishes_jobs" {
  project = var.project_id
  topic   = google_pubsub_topic.jobs.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.inference.email}"
}

resource "google_cloud_run_v2_service" "inference" {
  project             = var.project_id
  name                = var.service_name
  location            = var.region
  description         = "MedGemma 4B screening of colorectal histopathology images (Healer)."
  labels              = local.labels
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection

  template {
    service_account = google_service_account.inference.email
    labels          = local.labels

    # Timing chain: Cloud Run request timeout 600 s <= ack deadline 600 s.
    timeout                          = "600s"
    max_instance_request_concurrency = local.max_concurrency

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    node_selector {
      accelerator = "nvidia-l4"
    }
    gpu_zonal_redundancy_disabled = var.gpu_zonal_redundancy_disabled

    containers {
      image = local.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu              = var.cpu
          memory           = var.memory
          "nvidia.com/gpu" = "1"
        }
        # CPU always allocated: the micro-batcher, lease renewals and SIGTERM handling run
        # outside request handling, and GPU instances require it anyway.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      env {
        name  = "PROJECT_ID"
        value = var.project_id
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
        name  = "MODEL_ID"
        value = var.model_id
      }
      env {
        name  = "MODEL_DIR"
        value = "/models/medgemma"
      }
      env {
        # The weights are in the image; never reach for the Hub at run time.
        name  = "HF_HUB_OFFLINE"
        value = "1"
      }
      env {
        name  = "MAX_BATCH_SIZE"
        value = tostring(var.max_batch_size)
      }
      env {
        name  = "BATCH_WINDOW_MS"
        value = tostring(var.batch_window_ms)
      }
      env {
        name  = "QUANTIZATION"
        value = var.quantization
      }
      env {
        name  = "MAX_IMAGE_BYTES"
        value = tostring(var.max_image_bytes)
      }
      env {
        name  = "JOB_TTL_DAYS"
        value = tostring(var.job_ttl_days)
      }
      env {
        name  = "LEASE_SECONDS"
        value = tostring(var.lease_seconds)
      }
      env {
        # Slide shards are read from this bucket only…
        name  = "WORK_BUCKET"
        value = google_storage_bucket.work.name
      }
      env {
        # …and a slide's last shard publishes its finalize message here.
        name  = "SLIDES_TOPIC"
        value = google_pubsub_topic.slides.name
      }
      env {
        # The most tiles of a slide report's one prompt (the slide service chooses as many).
        name  = "SLIDE_REPORT_PATCHES"
        value = tostring(var.slide_report_patches)
      }
      env {
        # Dead letters of jobs never really run are republished here…
        name  = "JOBS_TOPIC"
        value = google_pubsub_topic.jobs.name
      }
      env {
        # …and a dead letter fails a job only once it was leased as many times as the
        # subscription delivers it.
        name  = "MAX_DELIVERY_ATTEMPTS"
        value = tostring(var.max_delivery_attempts)
      }
      env {
        # The service verifies the OIDC token of every push: this audience…
        name  = "PUSH_AUDIENCE"
        value = local.inference_url
      }
      env {
        # …signed for this account.
        name  = "PUSH_SERVICE_ACCOUNT"
        value = google_service_account.push.email
      }

      # Loading ~8.6 GB of bf16 weights onto the L4 and the start-up self-test take a minute or
      # two: allow up to 10 minutes before Cloud Run gives up on the instance.
      startup_probe {
        initial_delay_seconds = 10
        period_seconds        = 10
        timeout_seconds       = 5
        failure_threshold     = 60
        http_get {
          path = "/readyz"
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/healthz"
          port = 8080
        }
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.inference_firestore,
    google_storage_bucket_iam_member.inference_reads_inbox,
    google_storage_bucket_iam_member.inference_reads_work,
  ]
}

# Why: Pub/Sub delivers jobs (shards included) and dead letters with the push account's OIDC token; it is the only
# principal that may invoke the service (no allUsers, no allAuthenticatedUsers).
resource "google_cloud_run_v2_service_iam_member" "push_invokes_inference" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.inference.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}
