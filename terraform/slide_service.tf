# The slide service (slide_service/): whole-slide images into tiles, shards and a slide verdict.
# CPU only, its own Cloud Run service and runtime account. Self-contained: the slide path's
# variables (service, tiling, budgets) and the service's outputs live in this file; its topic is
# in pubsub.tf, the work and results buckets in storage.tf.
#
#   slides topic ─push (OIDC)─► slide service ─► shards in the work bucket + one message per
#   shard on the jobs topic ─► inference service ─(last shard)─► finalize on the slides topic
#   ─► slide service ─► heatmap, GeoJSON, thumbnail in the results bucket, the slide verdict
#
# The service reads a slide through a Cloud Storage FUSE volume of the inbox bucket, mounted
# read-only at SLIDE_MOUNT: OpenSlide reads the few ranges it needs (the header, a low level for
# the tissue mask, then one region per tile) without downloading gigabytes first.
#
# Ingress is internal only (inference.tf says why Pub/Sub push still arrives), and only the push
# account may invoke it.

# ── Service ──────────────────────────────────────────────────────────────────────────────────

variable "slide_service_name" {
  description = "Cloud Run service name of the slide service."
  type        = string
  default     = "healer-slide-service"

  validation {
    # Name plus "-<project number>" must fit a 63-char DNS label for the deterministic URL.
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.slide_service_name))
    error_message = "slide_service_name must be a valid Cloud Run service name (lower case, digits, dashes; <= 49 chars)."
  }
}

variable "slide_image" {
  description = "Container image of the slide service, ideally by digest (Cloud Build passes …/healer-slide@sha256:…). Null: <region>-docker.pkg.dev/<project>/<repository_name>/healer-slide:latest."
  type        = string
  default     = null
}

variable "slide_cpu" {
  description = "vCPUs of a slide service instance. Tiling runs one worker process per vCPU (27 tiles per CPU-second at TILE_MPP 1.0, 7.3 at 0.5, measured in docs/SLIDES.md); 8 for TILE_MPP 0.5 with slides near the MAX_SLIDE_TILES budget."
  type        = string
  default     = "4"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.slide_cpu)
    error_message = "slide_cpu must be 1, 2, 4, 6 or 8."
  }
}

variable "slide_memory" {
  description = "Memory of a slide service instance (e.g. 2Gi). It must hold the measured peak of tiling (docs/SLIDES.md: 216 MiB for the service plus 138 MiB per worker process, one per vCPU) plus the FUSE volume's caches, and meet Cloud Run's minimum for slide_cpu (2Gi at 4 vCPU, 4Gi at 6 or 8): checked at plan time."
  type        = string
  default     = "2Gi"

  validation {
    condition     = can(regex("^[1-9][0-9]*(Mi|Gi)$", var.slide_memory))
    error_message = "slide_memory must look like 1024Mi or 2Gi."
  }
}

variable "slide_max_concurrency" {
  description = "Requests one slide service instance accepts at once. 1: one slide per instance (tiling uses every vCPU; a second slide would halve both and double the memory), Cloud Run scales out instead."
  type        = number
  default     = 1

  validation {
    condition     = var.slide_max_concurrency >= 1 && var.slide_max_concurrency <= 8
    error_message = "slide_max_concurrency must be between 1 and 8."
  }
}

variable "slide_min_instances" {
  description = "Minimum slide service instances. 0 scales to zero (a CPU instance starts in seconds); 1 keeps one warm and billed."
  type        = number
  default     = 0

  validation {
    condition     = var.slide_min_instances >= 0 && var.slide_min_instances <= 100
    error_message = "slide_min_instances must be between 0 and 100."
  }
}

variable "slide_max_instances" {
  description = "Maximum slide service instances: slides tiled (or finalized) at the same time. Tiling a slide takes seconds to minutes, scoring its tiles on the GPUs longer, so a few feed max_instances L4s."
  type        = number
  default     = 4

  validation {
    condition     = var.slide_max_instances >= 1 && var.slide_max_instances <= 100
    error_message = "slide_max_instances must be between 1 and 100."
  }
}

# ── Tiling and budgets (names and ranges as slide_service/settings.py; docs/SLIDES.md) ───────

variable "tile_mpp" {
  description = "TILE_MPP: micrometres per pixel of a tile (1.0 ≈ 10X, as MedGemma's whole-slide notebook reads patches; 0.5 ≈ 20X: four times the tiles and the GPU time)."
  type        = number
  default     = 1.0

  validation {
    condition     = var.tile_mpp > 0 && var.tile_mpp <= 16
    error_message = "tile_mpp must be in (0, 16]."
  }
}

variable "tile_px" {
  description = "TILE_PX: side of a tile in pixels, the model's input size (896 for MedGemma)."
  type        = number
  default     = 896

  validation {
    condition     = var.tile_px >= 64 && var.tile_px <= 4096 && floor(var.tile_px) == var.tile_px
    error_message = "tile_px must be a whole number between 64 and 4096."
  }
}

variable "min_tissue" {
  description = "MIN_TISSUE: fraction of a tile that must be tissue for the tile to be scored."
  type        = number
  default     = 0.25

  validation {
    condition     = var.min_tissue > 0 && var.min_tissue <= 1
    error_message = "min_tissue must be in (0, 1]."
  }
}

variable "shard_tiles" {
  description = "SHARD_TILES: tiles per shard object and per shard message (64 tiles of 896 px ≈ 16 MB; the inference service runs a shard as batches of max_batch_size)."
  type        = number
  default     = 64

  validation {
    condition     = var.shard_tiles >= 1 && var.shard_tiles <= 1024 && floor(var.shard_tiles) == var.shard_tiles
    error_message = "shard_tiles must be a whole number between 1 and 1024."
  }
}

variable "slide_top_k" {
  description = "SLIDE_TOP_K: the slide score is the mean p_yes of this many highest-scoring tiles (docs/SLIDES.md says why)."
  type        = number
  default     = 8

  validation {
    condition     = var.slide_top_k >= 1 && var.slide_top_k <= 1024 && floor(var.slide_top_k) == var.slide_top_k
    error_message = "slide_top_k must be a whole number between 1 and 1024."
  }
}

variable "max_slide_bytes" {
  description = "MAX_SLIDE_BYTES: largest accepted slide file in bytes (ingest, the slide service and the console); larger ones fail as too_large without being read."
  type        = number
  default     = 10000000000

  validation {
    condition     = var.max_slide_bytes >= 1 && floor(var.max_slide_bytes) == var.max_slide_bytes
    error_message = "max_slide_bytes must be a positive whole number of bytes."
  }
}

variable "max_slide_pixels" {
  description = "MAX_SLIDE_PIXELS: largest level-0 width x height of a slide; larger ones fail as too_large."
  type        = number
  default     = 40000000000

  validation {
    condition     = var.max_slide_pixels >= 1 && floor(var.max_slide_pixels) == var.max_slide_pixels
    error_message = "max_slide_pixels must be a positive whole number."
  }
}

variable "max_slide_tiles" {
  description = "MAX_SLIDE_TILES: most tissue tiles of one slide; more fail as too_large. Bounds the GPU time of a slide (20,000 tiles ≈ 48 L4-minutes) and its tiling time within the request timeout."
  type        = number
  default     = 20000

  validation {
    condition     = var.max_slide_tiles >= 1 && var.max_slide_tiles <= 1000000 && floor(var.max_slide_tiles) == var.max_slide_tiles
    error_message = "max_slide_tiles must be a whole number between 1 and 1,000,000."
  }
}

locals {
  slide_image = coalesce(
    var.slide_image,
    "${var.region}-docker.pkg.dev/${var.project_id}/${var.repository_name}/healer-slide:latest",
  )
  # Cloud Run's deterministic URL: the push subscriptions' endpoint and OIDC audience, known
  # before the service exists (as for the inference service).
  slide_url = "https://${var.slide_service_name}-${local.project_number}.${var.region}.run.app"
  # Where the inbox bucket's FUSE volume is mounted (SLIDE_MOUNT): the slide service reads
  # <SLIDE_MOUNT>/<object name>; the console's slide viewer reads the same path.
  slide_mount = "/mnt/inbox"
  # Request timeout = the slides subscription's ack deadline (pubsub.tf) = 600 s, the longest ack
  # deadline Pub/Sub allows: a delivery is never redelivered while its slide is still tiling. At the measured rates
  # (docs/SLIDES.md) a slide at the MAX_SLIDE_TILES budget tiles in ≈ 185 s on 4 vCPU at TILE_MPP
  # 1.0; at 0.5 it needs 8 vCPU (≈ 340 s).
  slide_timeout_seconds = 600
}

# Sizing check (the service's preconditions; tests/terraform/test_environments.py evaluates this
# block with every environment file): the measured peak of docs/SLIDES.md's bench-slide — the
# service process 216 MiB, each worker process 138 MiB, one worker per vCPU — plus 64 MiB for
# Cloud Storage FUSE (its stat and type caches, 36 MiB by default, and 1 MiB per open file),
# which Cloud Run counts against the instance's memory.
locals {
  slide_memory_mib = tonumber(regex("^[0-9]+", var.slide_memory)) * (endswith(var.slide_memory, "Gi") ? 1024 : 1)
  slide_peak_mib   = 216 + 138 * tonumber(var.slide_cpu) + 64
  # Cloud Run's memory range per vCPU count (second generation: at least 512 MiB).
  slide_memory_range_mib = {
    "1" = [512, 4096]
    "2" = [512, 8192]
    "4" = [2048, 16384]
    "6" = [4096, 24576]
    "8" = [4096, 32768]
  }[var.slide_cpu]
}

resource "google_service_account" "slide_service" {
  project      = var.project_id
  account_id   = "${local.prefix}-slide"
  display_name = "Healer slide service runtime"

  depends_on = [google_project_service.apis]
}

# Why: the service leases slide jobs, creates their shard documents and writes slide verdicts in
# Firestore transactions; Firestore has no narrower predefined scope than the project.
resource "google_project_iam_member" "slide_service_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.slide_service.email}"
}

# Why: the FUSE volume reads slides as this account: objects (get) and, to resolve the folders
# of an object name, listings (list); the inbox bucket only, read-only.
resource "google_storage_bucket_iam_member" "slide_service_reads_inbox" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.slide_service.email}"
}

# Why: tiling writes shards and the thumbnail here, and a retried tiling rewrites them (an
# overwrite needs delete, which objectCreator lacks); finalize reads the thumbnail back. The work
# bucket only.
resource "google_storage_bucket_iam_member" "slide_service_writes_work" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.slide_service.email}"
}

# Why: finalize writes the heatmap, GeoJSON and thumbnail, and a retried finalize rewrites them
# (overwrite = delete + create). The results bucket only; results_versioning keeps what a rewrite
# replaces.
resource "google_storage_bucket_iam_member" "slide_service_writes_results" {
  bucket = google_storage_bucket.results.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.slide_service.email}"
}

# Why: one message per shard (and, after finalize, the slide's report message) goes to the jobs
# topic, where the inference service picks it up.
resource "google_pubsub_topic_iam_member" "slide_service_publishes_jobs" {
  project = var.project_id
  topic   = google_pubsub_topic.jobs.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.slide_service.email}"
}

# Why: a tile or finalize dead letter that deserves another run goes back on the slides topic
# (the rule #11 gave the inference service's dead-letter route for jobs). A message on this topic
# reaches only the slide service itself.
resource "google_pubsub_topic_iam_member" "slide_service_publishes_slides" {
  project = var.project_id
  topic   = google_pubsub_topic.slides.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.slide_service.email}"
}

resource "google_cloud_run_v2_service" "slide_service" {
  # mount_options of a Cloud Storage volume is a google-beta field in the 6.x providers.
  provider            = google-beta
  project             = var.project_id
  name                = var.slide_service_name
  location            = var.region
  description         = "Healer slide service: whole-slide images into tiles, shards and a slide verdict (CPU, OpenSlide)."
  labels              = local.labels
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection

  template {
    service_account = google_service_account.slide_service.email
    labels          = local.labels
    # Cloud Storage volumes need the second generation execution environment.
    execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

    timeout = "${local.slide_timeout_seconds}s"
    # One slide per instance by default: tiling keeps every vCPU busy and holds 138 MiB per
    # worker process; a second slide on the same instance would halve the speed of both and
    # double the memory, while Cloud Run starts another instance in seconds. Short finalize
    # requests share the limit: they get an instance of their own.
    max_instance_request_concurrency = var.slide_max_concurrency

    scaling {
      min_instance_count = var.slide_min_instances
      max_instance_count = var.slide_max_instances
    }

    volumes {
      name = "inbox"
      gcs {
        bucket    = google_storage_bucket.inbox.name
        read_only = true
        # Uploads land under prefixes (lab-a/slide.svs) without folder placeholder objects;
        # without implicit-dirs FUSE would not resolve those paths.
        mount_options = ["implicit-dirs"]
      }
    }

    containers {
      image = local.slide_image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.slide_cpu
          memory = var.slide_memory
        }
        # CPU only while a request runs (request-based billing): all the work (tiling,
        # finalize) happens inside the push request that asked for it, lease renewals included.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      volume_mounts {
        name       = "inbox"
        mount_path = local.slide_mount
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
        # Shard (and report) messages go here…
        name  = "JOBS_TOPIC"
        value = google_pubsub_topic.jobs.name
      }
      env {
        # …tile and finalize messages here.
        name  = "SLIDES_TOPIC"
        value = google_pubsub_topic.slides.name
      }
      env {
        # The bucket mounted at SLIDE_MOUNT: a job from any other bucket is refused.
        name  = "HEALER_BUCKET"
        value = google_storage_bucket.inbox.name
      }
      env {
        name  = "SLIDE_MOUNT"
        value = local.slide_mount
      }
      env {
        name  = "WORK_BUCKET"
        value = google_storage_bucket.work.name
      }
      env {
        name  = "RESULTS_BUCKET"
        value = google_storage_bucket.results.name
      }
      env {
        name  = "MAX_SLIDE_BYTES"
        value = tostring(var.max_slide_bytes)
      }
      env {
        name  = "MAX_SLIDE_PIXELS"
        value = tostring(var.max_slide_pixels)
      }
      env {
        name  = "MAX_SLIDE_TILES"
        value = tostring(var.max_slide_tiles)
      }
      env {
        name  = "TILE_MPP"
        value = tostring(var.tile_mpp)
      }
      env {
        name  = "TILE_PX"
        value = tostring(var.tile_px)
      }
      env {
        name  = "MIN_TISSUE"
        value = tostring(var.min_tissue)
      }
      env {
        name  = "SHARD_TILES"
        value = tostring(var.shard_tiles)
      }
      env {
        name  = "SLIDE_TOP_K"
        value = tostring(var.slide_top_k)
      }
      env {
        # Tiles chosen for each slide's report at finalize (0: no report task); the inference
        # service gets the same value as its ceiling.
        name  = "SLIDE_REPORT_PATCHES"
        value = tostring(var.slide_report_patches)
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
        # The service verifies the OIDC token of every push: this audience…
        name  = "PUSH_AUDIENCE"
        value = local.slide_url
      }
      env {
        # …signed for this account.
        name  = "PUSH_SERVICE_ACCOUNT"
        value = google_service_account.push.email
      }

      startup_probe {
        period_seconds    = 2
        timeout_seconds   = 2
        failure_threshold = 30
        http_get {
          path = "/readyz"
          port = 8080
        }
      }

      # A tiling request runs for minutes: /healthz must answer meanwhile (the work runs off the
      # event loop), or this probe restarts the instance under it.
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

  lifecycle {
    precondition {
      condition     = local.slide_memory_mib >= local.slide_memory_range_mib[0] && local.slide_memory_mib <= local.slide_memory_range_mib[1]
      error_message = "slide_memory = ${var.slide_memory} is outside Cloud Run's range for ${var.slide_cpu} vCPU (${local.slide_memory_range_mib[0]}-${local.slide_memory_range_mib[1]} MiB)."
    }
    precondition {
      condition     = local.slide_memory_mib >= local.slide_peak_mib
      error_message = "slide_memory = ${var.slide_memory} is under the measured peak of tiling on ${var.slide_cpu} vCPU (${local.slide_peak_mib} MiB: 216 + 138 per worker + 64 for FUSE; docs/SLIDES.md)."
    }
  }

  # The FUSE volume mounts as the runtime account at start-up: its inbox grant must exist.
  depends_on = [
    google_project_service.apis,
    google_project_iam_member.slide_service_firestore,
    google_storage_bucket_iam_member.slide_service_reads_inbox,
  ]
}

# Why: Pub/Sub delivers slide messages and slide dead letters with the push account's OIDC token;
# it is the only principal that may invoke the service (no allUsers, no allAuthenticatedUsers).
resource "google_cloud_run_v2_service_iam_member" "push_invokes_slide_service" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.slide_service.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}

output "slide_service_url" {
  description = "URL of the slide service (internal ingress: reachable from Pub/Sub and the project's VPC, not the internet)."
  value       = local.slide_url
}

output "slide_service_name" {
  description = "Cloud Run service name of the slide service."
  value       = google_cloud_run_v2_service.slide_service.name
}

output "slide_service_account" {
  description = "Runtime service account of the slide service (reads the inbox, writes the work and results buckets, publishes to the jobs and slides topics)."
  value       = google_service_account.slide_service.email
}

output "slide_deployed_image" {
  description = "Image reference the slide service runs."
  value       = local.slide_image
}
