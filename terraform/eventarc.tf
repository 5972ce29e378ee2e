# Eventarc: object.finalized on the inbox bucket → ingest function. The trigger itself is the
# `event_trigger` block of google_cloudfunctions2_function.ingest (function.tf), which lets Cloud
# Functions own its retry policy; this file holds the identity the trigger delivers with.

resource "google_service_account" "eventarc_trigger" {
  project      = var.project_id
  account_id   = "${local.prefix}-eventarc"
  display_name = "Healer Eventarc trigger (delivers upload events to the ingest function)"

  depends_on = [google_project_service.apis]
}

# Why: Eventarc requires the trigger's account to hold eventReceiver to accept events for it.
# The role is only grantable on the project.
resource "google_project_iam_member" "eventarc_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.eventarc_trigger.email}"
}

# Why: the trigger delivers by calling the function's Cloud Run service with an OIDC token of
# this account; invoker on that one service, nothing else.
resource "google_cloud_run_v2_service_iam_member" "eventarc_invokes_ingest" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.ingest.name # a gen2 function's service has its name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.eventarc_trigger.email}"
}

# Why: the trigger is a Pub/Sub push subscription signed with this account's OIDC token, and
# Pub/Sub's agent mints it. Projects created before April 2021 lack the implicit grant; scoped
# to this one account.
resource "google_service_account_iam_member" "pubsub_agent_mints_eventarc_token" {
  service_account_id = google_service_account.eventarc_trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
