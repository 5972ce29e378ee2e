# What a user or operator needs after `terraform apply`.

output "inbox_bucket" {
  description = "Bucket to upload images and whole slides into; each new object generation becomes one job."
  value       = google_storage_bucket.inbox.name
}

output "service_url" {
  description = "URL of the inference service (internal ingress: reachable from the project's VPC and Pub/Sub, not the internet)."
  value       = local.inference_url
}

output "service_name" {
  description = "Cloud Run service name of the inference service."
  value       = google_cloud_run_v2_service.inference.name
}

output "jobs_topic" {
  description = "Pub/Sub topic carrying job messages."
  value       = google_pubsub_topic.jobs.name
}

output "jobs_subscription" {
  description = "Push subscription delivering jobs to the service."
  value       = google_pubsub_subscription.jobs_push.name
}

output "dead_letter_topic" {
  description = "Pub/Sub topic receiving job messages that exhausted their deliveries."
  value       = google_pubsub_topic.dead_letter.name
}

output "dead_letter_hold_subscription" {
  description = "Pull subscription retaining every dead letter for 7 days."
  value       = google_pubsub_subscription.dead_letter_hold.name
}

output "slides_topic" {
  description = "Pub/Sub topic carrying slide messages (tile, finalize) to the slide service."
  value       = google_pubsub_topic.slides.name
}

output "slides_subscription" {
  description = "Push subscription delivering slide messages to the slide service."
  value       = google_pubsub_subscription.slides_push.name
}

output "slides_dead_letter_topic" {
  description = "Pub/Sub topic receiving slide messages that exhausted their deliveries."
  value       = google_pubsub_topic.slides_dead_letter.name
}

output "slides_dead_letter_hold_subscription" {
  description = "Pull subscription retaining every slide dead letter for 7 days."
  value       = google_pubsub_subscription.slides_dead_letter_hold.name
}

output "work_bucket" {
  description = "Bucket of slide shards and thumbnails (shards/{job_id}/…, thumbnails/{job_id}.png), deleted after work_retention_days."
  value       = google_storage_bucket.work.name
}

output "results_bucket" {
  description = "Bucket of slide results, kept: slides/{job_id}/heatmap.png, tiles.geojson, thumbnail.png."
  value       = google_storage_bucket.results.name
}

output "firestore_database" {
  description = "Firestore database holding the jobs collection."
  value       = google_firestore_database.main.name
}

output "jobs_collection" {
  description = "Firestore collection of job documents."
  value       = var.jobs_collection
}

output "ingest_function" {
  description = "Name of the ingest function (Cloud Functions gen2)."
  value       = google_cloudfunctions2_function.ingest.name
}

output "reconcile_function" {
  description = "Name of the reconcile function called by Cloud Scheduler."
  value       = google_cloudfunctions2_function.reconcile.name
}

output "image_repository" {
  description = "Artifact Registry path the build pushes the inference image to."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}/${var.image_name}"
}

output "deployed_image" {
  description = "Image reference the inference service runs."
  value       = local.image
}

output "hf_token_secret" {
  description = "Secret Manager secret to put the Hugging Face token into (value added out of band)."
  value       = google_secret_manager_secret.hf_token.secret_id
}

output "build_service_accounts" {
  description = "Service accounts of the three Cloud Build stages (make deploy passes each to gcloud builds submit): ci runs the tests, image_build builds and pushes, deploy applies Terraform."
  value = {
    ci          = google_service_account.ci.email
    image_build = google_service_account.image_build.email
    deploy      = google_service_account.deploy.email
  }
}

output "build_staging_bucket" {
  description = "Bucket for `gcloud builds submit` source archives."
  value       = google_storage_bucket.build_staging.name
}

output "upload_command" {
  description = "How to submit an image for screening."
  value       = "gcloud storage cp FILE gs://${google_storage_bucket.inbox.name}/"
}

# Every word is shell-safe (ids are validated), so the command works pasted and as
# `$(terraform output -raw results_command)`: a substitution passes quotes through literally, and
# "(default)" would need them, so --database is named only for a named database (the CLI's own
# default is "(default)").
locals {
  results_command = join(" ", compact([
    "healer results --project ${var.project_id}",
    "--bucket ${local.inbox_bucket_name}",
    "--collection ${var.jobs_collection}",
    var.firestore_database == "(default)" ? "" : "--database ${var.firestore_database}",
  ]))
}

output "results_command" {
  description = "How to read verdicts (the healer CLI from `make venv`); shell-safe, also as $(terraform output -raw results_command)."
  value       = local.results_command
}
