# Shared lookups and names. Resources are split by concern into the other files:
# apis → storage → eventarc → function → pubsub → inference → slide_service → firestore → reconcile
# → console → monitoring.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  prefix         = var.name_prefix
  project_number = data.google_project.this.number

  labels = merge({ app = "healer", managed-by = "terraform" }, var.labels)

  inbox_bucket_name    = coalesce(var.inbox_bucket_name, "${var.project_id}-${local.prefix}-inbox")
  work_bucket_name     = "${var.project_id}-${local.prefix}-work"
  results_bucket_name  = "${var.project_id}-${local.prefix}-results"
  function_bucket_name = "${var.project_id}-${local.prefix}-fn-source"
  build_bucket_name    = "${var.project_id}-${local.prefix}-build"

  # Cloud Run's deterministic URL. Known before the service exists, so the service can be told
  # its own OIDC audience (PUSH_AUDIENCE) without a dependency cycle, and Pub/Sub pushes to the
  # same string it signs the token for.
  inference_url = "https://${var.service_name}-${local.project_number}.${var.region}.run.app"

  image = coalesce(
    var.image,
    "${var.region}-docker.pkg.dev/${var.project_id}/${var.repository_name}/${var.image_name}:latest",
  )

  # Concurrency is tied to the batch size: enough requests in flight to fill one batch while the
  # previous one runs on the GPU; more would only wait in the batcher's queue (and hold leases).
  max_concurrency = coalesce(var.max_concurrency, 2 * var.max_batch_size)
}
