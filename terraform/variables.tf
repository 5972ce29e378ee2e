# Inputs of the Healer root module. Every variable is typed and described; the seed's names
# (project_id, region, repository_name, service_name, model_id) are kept.

# ── Project and naming ───────────────────────────────────────────────────────────────────────

variable "project_id" {
  description = "Google Cloud project that hosts the whole pipeline (the seed's PROJECT_ID)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id (6-30 chars, lowercase, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of every regional resource (the seed's REGION). Must offer Cloud Run NVIDIA L4 GPUs (e.g. europe-west1, europe-west4, us-central1, asia-southeast1; the current list is on Cloud Run's GPU page) and hold L4 quota for max_instances GPUs."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like a Google Cloud region, e.g. europe-west1."
  }
}

variable "name_prefix" {
  description = "Prefix of the service accounts, functions, buckets, function repository and scheduler job. Not of topics, services, the secret or the database: one deployment per project (environments are separate projects)."
  type        = string
  default     = "healer"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,12}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-14 chars of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Extra labels merged into every resource that supports labels."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the Cloud Run service and the Firestore database against deletion by Terraform. Turn off only for throw-away environments."
  type        = bool
  default     = true
}

# ── Inbox bucket ─────────────────────────────────────────────────────────────────────────────

variable "inbox_bucket_name" {
  description = "Name of the inbox bucket users upload images to. Empty: \"<project_id>-<name_prefix>-inbox\"."
  type        = string
  default     = ""

  validation {
    condition     = var.inbox_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.inbox_bucket_name))
    error_message = "inbox_bucket_name must be a valid bucket name (3-63 chars) or empty."
  }
}

variable "inbox_kms_key_name" {
  description = "Optional Cloud KMS key (projects/…/locations/…/keyRings/…/cryptoKeys/…) for CMEK on the inbox bucket, and on the work and results buckets, which hold what is derived from uploads (slide tiles, thumbnails, heatmaps). Null: Google-managed encryption."
  type        = string
  default     = null

  validation {
    condition     = var.inbox_kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.inbox_kms_key_name))
    error_message = "inbox_kms_key_name must be a full Cloud KMS crypto key name, or null."
  }
}

variable "inbox_versioning" {
  description = "Keep noncurrent object versions in the inbox bucket. Every upload is already its own job (keyed by generation), so this only protects against deletes/overwrites."
  type        = bool
  default     = false
}

variable "inbox_lifecycle_rules" {
  description = "Lifecycle rules of the inbox bucket, e.g. delete images after 30 days. action.type is Delete or SetStorageClass."
  type = list(object({
    action = object({
      type          = string
      storage_class = optional(string)
    })
    condition = object({
      age                        = optional(number)
      created_before             = optional(string)
      with_state                 = optional(string)
      matches_prefix             = optional(list(string))
      matches_suffix             = optional(list(string))
      num_newer_versions         = optional(number)
      days_since_noncurrent_time = optional(number)
    })
  }))
  default = []

  validation {
    condition     = alltrue([for r in var.inbox_lifecycle_rules : contains(["Delete", "SetStorageClass", "AbortIncompleteMultipartUpload"], r.action.type)])
    error_message = "Each lifecycle rule action.type must be Delete, SetStorageClass or AbortIncompleteMultipartUpload."
  }
}

# ── Work and results buckets (whole-slide images) ────────────────────────────────────────────

variable "work_retention_days" {
  description = "Days the work bucket keeps an object (slide shards, thumbnails) before its lifecycle rule deletes it. A slide needs its shards for minutes; the margin covers retries, dead-letter replays and the reconcile sweep."
  type        = number
  default     = 7

  validation {
    condition     = var.work_retention_days >= 1 && var.work_retention_days <= 365 && floor(var.work_retention_days) == var.work_retention_days
    error_message = "work_retention_days must be a whole number of days between 1 and 365."
  }
}

variable "results_versioning" {
  description = "Keep noncurrent object versions in the results bucket (slide heatmaps, GeoJSON, thumbnails): a deleted or overwritten artifact stays recoverable. Results are kept; nothing expires them."
  type        = bool
  default     = false
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete non-empty buckets (inbox, work, results, function source, build staging). Keep false outside throw-away environments."
  type        = bool
  default     = false
}

# ── Jobs, Pub/Sub, Firestore ─────────────────────────────────────────────────────────────────

variable "jobs_topic_name" {
  description = "Pub/Sub topic id for job messages; the dead-letter topic and subscriptions are named after it."
  type        = string
  default     = "healer-jobs"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~%+-]{2,200}$", var.jobs_topic_name))
    error_message = "jobs_topic_name must be a valid Pub/Sub topic id."
  }
}

variable "slides_topic_name" {
  description = "Pub/Sub topic id for slide messages (SLIDES_TOPIC: tile a slide, finalize it); its dead-letter topic and subscriptions are named after it."
  type        = string
  default     = "slides"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~%+-]{2,200}$", var.slides_topic_name))
    error_message = "slides_topic_name must be a valid Pub/Sub topic id."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of one job or slide message before Pub/Sub moves it to its dead-letter topic (Pub/Sub allows 5-100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "ack_deadline_seconds" {
  description = "Ack deadline of the push subscription; must be >= the Cloud Run request timeout (timing chain in ARCHITECTURE.md)."
  type        = number
  default     = 600

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
}

variable "jobs_collection" {
  description = "Firestore collection holding job documents (JOBS_COLLECTION)."
  type        = string
  default     = "jobs"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,100}$", var.jobs_collection))
    error_message = "jobs_collection must be a simple collection id."
  }
}

variable "firestore_database" {
  description = "Firestore database id (FIRESTORE_DATABASE). \"(default)\" or a named database. If the project already has a (default) database, import it or pick a name."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be \"(default)\" or a valid database id."
  }
}

variable "firestore_location" {
  description = "Firestore location id. Null: the same as region."
  type        = string
  default     = null
}

variable "job_ttl_days" {
  description = "Days a finished (done/failed) job document is kept. Above 0, the service and functions write `expire_at` = finish time + this, and a Firestore TTL policy deletes the document after it. 0 keeps jobs forever."
  type        = number
  default     = 0

  validation {
    condition     = var.job_ttl_days >= 0
    error_message = "job_ttl_days must be 0 (keep forever) or a positive number of days."
  }
}

# ── Ingest and reconcile functions ───────────────────────────────────────────────────────────

variable "function_bundle_dir" {
  description = "Directory built by `make function-bundle` (ingest_function + healer_core), relative to this module."
  type        = string
  default     = "../build/function"
}

variable "max_image_bytes" {
  description = "Largest accepted upload in bytes (MAX_IMAGE_BYTES); larger objects become failed jobs (too_large) without being downloaded."
  type        = number
  default     = 52428800

  validation {
    condition     = var.max_image_bytes > 0
    error_message = "max_image_bytes must be positive."
  }
}

variable "ingest_max_instances" {
  description = "Maximum instances of the ingest function; it only writes a document and publishes, so a few are plenty."
  type        = number
  default     = 20

  validation {
    condition     = var.ingest_max_instances >= 1 && var.ingest_max_instances <= 1000
    error_message = "ingest_max_instances must be between 1 and 1000."
  }
}

variable "function_memory" {
  description = "Memory of each function instance (Cloud Functions gen2 format, e.g. 256Mi, 512Mi)."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.function_memory))
    error_message = "function_memory must look like 512Mi or 1Gi."
  }
}

variable "reconcile_schedule" {
  description = "Cron schedule of the reconciliation sweep (Cloud Scheduler syntax)."
  type        = string
  default     = "*/15 * * * *"
}

variable "reconcile_time_zone" {
  description = "Time zone of reconcile_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "reconcile_timeout_seconds" {
  description = "Request timeout of the reconcile function (HTTP functions allow up to 3600 s; Cloud Scheduler waits at most 1800 s)."
  type        = number
  default     = 540

  validation {
    condition     = var.reconcile_timeout_seconds >= 60 && var.reconcile_timeout_seconds <= 1800
    error_message = "reconcile_timeout_seconds must be between 60 and 1800."
  }
}

# ── Inference service ────────────────────────────────────────────────────────────────────────

variable "repository_name" {
  description = "Artifact Registry Docker repository of the inference image (the seed's REPOSITORY_NAME)."
  type        = string
  default     = "healer-medgemma"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.repository_name))
    error_message = "repository_name must be lowercase letters, digits and hyphens."
  }
}

variable "image_name" {
  description = "Image name inside the repository."
  type        = string
  default     = "healer-inference"
}

variable "image" {
  description = "Full image reference to deploy, ideally by digest (Cloud Build passes REGION-docker.pkg.dev/…@sha256:…). Null: <repository>/<image_name>:latest."
  type        = string
  default     = null
}

variable "service_name" {
  description = "Cloud Run service name (the seed's SERVICE_NAME)."
  type        = string
  default     = "healer-medgemma-service"

  validation {
    # Name plus "-<project number>" must fit a 63-char DNS label for the deterministic URL.
    condition     = can(regex("^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$", var.service_name))
    error_message = "service_name must be 1-49 chars of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "model_id" {
  description = "Hugging Face model id baked into the image and reported in verdicts (the seed's MODEL_ID)."
  type        = string
  default     = "google/medgemma-1.5-4b-it"
}

variable "quantization" {
  description = "QUANTIZATION of the engine: none (bf16, the default and fastest), 8bit or 4bit (bitsandbytes)."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "8bit", "4bit"], var.quantization)
    error_message = "quantization must be none, 8bit or 4bit."
  }
}

variable "max_batch_size" {
  description = "MAX_BATCH_SIZE of the micro-batcher: images run together in one forward pass."
  type        = number
  default     = 8

  validation {
    condition     = var.max_batch_size >= 1 && var.max_batch_size <= 64
    error_message = "max_batch_size must be between 1 and 64."
  }
}

variable "slide_report_patches" {
  description = "SLIDE_REPORT_PATCHES, given to both services: the slide service chooses this many tiles of each slide for its MedGemma 1.5 report (0 turns reports off: no report task), the inference service takes at most this many in one prompt. 125 (Google's whole-slide notebook) fits an L4 next to the tile engine (docs/BENCHMARKS.md, 'The slide report on an L4')."
  type        = number
  default     = 125

  validation {
    condition     = var.slide_report_patches >= 0 && var.slide_report_patches <= 256 && floor(var.slide_report_patches) == var.slide_report_patches
    error_message = "slide_report_patches must be a whole number between 0 and 256."
  }
}

variable "batch_window_ms" {
  description = "BATCH_WINDOW_MS: how long the batcher waits to fill a batch."
  type        = number
  default     = 10

  validation {
    condition     = var.batch_window_ms >= 0 && var.batch_window_ms <= 1000
    error_message = "batch_window_ms must be between 0 and 1000."
  }
}

variable "max_concurrency" {
  description = "Requests one instance accepts at once. Null: 2 x max_batch_size (one batch running, one filling)."
  type        = number
  default     = null

  validation {
    condition     = var.max_concurrency == null ? true : (var.max_concurrency >= 1 && var.max_concurrency <= 1000)
    error_message = "max_concurrency must be between 1 and 1000, or null."
  }
}

variable "lease_seconds" {
  description = "LEASE_SECONDS: how long a job lease lasts before another delivery may take the job."
  type        = number
  default     = 300

  validation {
    condition     = var.lease_seconds >= 30 && var.lease_seconds <= 3600
    error_message = "lease_seconds must be between 30 and 3600."
  }
}

variable "min_instances" {
  description = "Minimum inference instances. 0 scales the GPU to zero (cold start loads the model); 1 keeps one L4 warm and billed."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instances >= 0
    error_message = "min_instances must be >= 0."
  }
}

variable "max_instances" {
  description = "Maximum inference instances. Each holds one L4: the region's Cloud Run quota \"Total Nvidia L4 GPU allocation without zonal redundancy\" (or \"with\", see gpu_zonal_redundancy_disabled) must be at least this, plus min_instances of headroom while a new revision starts beside the old one."
  type        = number
  default     = 2

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 100
    error_message = "max_instances must be between 1 and 100."
  }
}

variable "cpu" {
  description = "vCPUs of an inference instance (Cloud Run GPU instances need at least 4)."
  type        = string
  default     = "8"

  validation {
    condition     = contains(["4", "6", "8"], var.cpu)
    error_message = "cpu must be 4, 6 or 8 for a GPU instance."
  }
}

variable "memory" {
  description = "Memory of an inference instance (Cloud Run GPU instances need at least 16Gi)."
  type        = string
  default     = "32Gi"

  validation {
    condition     = can(regex("^(1[6-9]|2[0-9]|3[0-2])Gi$", var.memory))
    error_message = "memory must be between 16Gi and 32Gi."
  }
}

variable "gpu_zonal_redundancy_disabled" {
  description = "Run the L4 without zonal redundancy: cheaper and needs less quota, at best-effort failover. Set false for zone-failure tolerance."
  type        = bool
  default     = true
}

# ── Build and registry ───────────────────────────────────────────────────────────────────────

variable "hf_token_secret_id" {
  description = "Secret Manager secret id holding the Hugging Face token (the value is added out of band, never by Terraform)."
  type        = string
  default     = "healer-hf-token"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,255}$", var.hf_token_secret_id))
    error_message = "hf_token_secret_id must be a valid Secret Manager secret id."
  }
}

variable "build_can_deploy" {
  description = "Grant the deploy service account the roles to run `terraform apply` (cloudbuild/deploy.yaml). False: the builds can only test, build and push; apply Terraform from elsewhere."
  type        = bool
  default     = true
}

variable "image_readers" {
  description = "Principals (serviceAccount:…) that may read this environment's image repository: the next environment's image build account, which copies promoted images by digest (make promote)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.image_readers : can(regex("^serviceAccount:[^@\\s]+@[^\\s]+$", m))])
    error_message = "Each image reader must be serviceAccount:<email>."
  }
}

variable "tf_state_bucket" {
  description = "Name of the GCS bucket holding this module's state; when set, the deploy account may read/write objects in it (and only it). Always pass it (make does): an apply without it removes that grant and the next deploy cannot read its state."
  type        = string
  default     = ""
}

# ── Monitoring ───────────────────────────────────────────────────────────────────────────────

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/…/notificationChannels/…) that receive every alert. Empty: alerts show in the console only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "Each notification channel must be a full id: projects/PROJECT/notificationChannels/ID."
  }
}

variable "alert_oldest_unacked_seconds" {
  description = "Alert when the oldest unacknowledged job message is older than this many seconds."
  type        = number
  default     = 1800

  validation {
    condition     = var.alert_oldest_unacked_seconds >= 60
    error_message = "alert_oldest_unacked_seconds must be at least 60."
  }
}

variable "alert_5xx_ratio" {
  description = "Alert when this fraction of inference requests answer 5xx over 5 minutes (503 is also the service's deliberate 'retry later')."
  type        = number
  default     = 0.2

  validation {
    condition     = var.alert_5xx_ratio > 0 && var.alert_5xx_ratio <= 1
    error_message = "alert_5xx_ratio must be in (0, 1]."
  }
}

# ── Audit ────────────────────────────────────────────────────────────────────────────────────

variable "storage_data_access_logs" {
  description = "Enable Cloud Storage Data Access audit logs (DATA_READ, DATA_WRITE) for the project. Note: this is authoritative for storage.googleapis.com's audit config in the project."
  type        = bool
  default     = true
}
