# Google-managed service agents the pipeline relies on. On a fresh project they do not exist
# until their API creates them lazily, and their IAM grants take a while to propagate: create
# them explicitly, grant, then wait, so that the first `terraform apply` succeeds.

# Pub/Sub's agent mints the OIDC tokens of push subscriptions and moves messages to the
# dead-letter topic.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}

# Eventarc's agent manages the trigger behind the ingest function.
resource "google_project_service_identity" "eventarc" {
  provider = google-beta
  project  = var.project_id
  service  = "eventarc.googleapis.com"

  depends_on = [google_project_service.apis]
}

# Reading this data source makes Cloud Storage create its service agent if it does not exist yet.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

locals {
  pubsub_agent   = "serviceAccount:${google_project_service_identity.pubsub.email}"
  eventarc_agent = "serviceAccount:${google_project_service_identity.eventarc.email}"
  gcs_agent      = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# Why: the Eventarc agent needs its own role to create the trigger's Pub/Sub plumbing. Google
# grants it when the agent is created by the API; granting it here makes a first apply on a
# project where the agent was just generated deterministic. Project scope is the only scope.
resource "google_project_iam_member" "eventarc_agent" {
  #checkov:skip=CKV_GCP_49:This is Google's own Eventarc service agent receiving its documented service-agent role.
  project = var.project_id
  role    = "roles/eventarc.serviceAgent"
  member  = local.eventarc_agent
}

# Why: a Cloud Storage trigger works by the Cloud Storage agent publishing object notifications
# to a topic that Eventarc creates and names itself; the name is unknown here, so the grant
# cannot be narrowed below the project.
resource "google_project_iam_member" "gcs_agent_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = local.gcs_agent
}

# IAM is eventually consistent, and so is a service agent that was just created: without a pause
# the function's trigger creation on a fresh project fails with "permission denied" on the
# just-granted agents, the inbox bucket cannot use a CMEK key whose grant has not propagated, and
# a grant naming the just-created IAP agent is refused. Everything that relies on one of these
# waits here: the ingest function, the inbox bucket, the IAP agent's invoker grant.
resource "time_sleep" "agent_iam_propagation" {
  create_duration = "90s"

  depends_on = [
    google_project_iam_member.eventarc_agent,
    google_project_iam_member.gcs_agent_publisher,
    google_project_iam_member.eventarc_receiver,
    google_service_account_iam_member.pubsub_agent_mints_eventarc_token,
    google_kms_crypto_key_iam_member.gcs_agent_cmek,
    google_project_service_identity.iap,
  ]
}
