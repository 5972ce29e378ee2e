# Pub/Sub: the jobs topic, its push subscription to the inference service, and the dead-letter
# path (pushed to /pubsub/dead-letter so the job is marked failed, and retained for 7 days); then
# the same three for the slides topic and the slide service.

resource "google_pubsub_topic" "jobs" {
  project = var.project_id
  name    = var.jobs_topic_name
  labels  = local.labels

  # Messages carry only {job_id, bucket, name, generation}: retain a day so a subscription
  # can be re-pointed or replayed after an outage.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  project = var.project_id
  name    = "${var.jobs_topic_name}-dead-letter"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# The identity Pub/Sub signs push requests with, for both services; each accepts only its tokens,
# and only for its own URL as audience.
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${local.prefix}-push"
  display_name = "Healer Pub/Sub push (signs deliveries to the inference and slide services)"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "jobs_push" {
  project = var.project_id
  name    = "${var.jobs_topic_name}-push"
  topic   = google_pubsub_topic.jobs.id
  labels  = local.labels

  # ack deadline (600 s) >= Cloud Run request timeout (600 s) > inference budget: a delivery is
  # never redelivered while the service is still working on it.
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "604800s"

  # Never expire: an idle pipeline must not lose its subscription after 31 days.
  expiration_policy {
    ttl = ""
  }

  # 429/503 from the service (lease held, batcher full, transient fault) back off 10 s → 600 s.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  push_config {
    push_endpoint = "${local.inference_url}/pubsub/push"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.inference_url
    }
  }

  depends_on = [
    google_cloud_run_v2_service.inference,
    google_cloud_run_v2_service_iam_member.push_invokes_inference,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters,
    google_service_account_iam_member.pubsub_agent_mints_push_token,
  ]
}

# Dead letters are pushed to the service, which marks the job failed (error.code=dead_lettered)
# so nothing is lost silently.
resource "google_pubsub_subscription" "dead_letter_push" {
  #checkov:skip=CKV_HEALER_2:This is the dead-letter path itself; dead_letter_hold keeps every message for 7 days.
  project = var.project_id
  name    = "${var.jobs_topic_name}-dead-letter-push"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  push_config {
    push_endpoint = "${local.inference_url}/pubsub/dead-letter"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.inference_url
    }
  }

  depends_on = [
    google_cloud_run_v2_service.inference,
    google_cloud_run_v2_service_iam_member.push_invokes_inference,
    google_service_account_iam_member.pubsub_agent_mints_push_token,
  ]
}

# A pull subscription nobody consumes: every dead letter stays inspectable (and replayable with
# `gcloud pubsub subscriptions pull`) for 7 days, whatever happens to the push path.
resource "google_pubsub_subscription" "dead_letter_hold" {
  project = var.project_id
  name    = "${var.jobs_topic_name}-dead-letter-hold"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# Why: dead-lettering is done by Pub/Sub's agent, which must publish to the dead-letter topic…
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

# Why: …and acknowledge the forwarded message on the source subscription (only that one).
resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_jobs" {
  project      = var.project_id
  subscription = google_pubsub_subscription.jobs_push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Why: Pub/Sub's agent mints the OIDC token of the push account for each delivery; scoped to
# that one account.
resource "google_service_account_iam_member" "pubsub_agent_mints_push_token" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# ── Slides: the same pattern for the slide service ───────────────────────────────────────────
# Topic "slides" carries `tile` (from ingest and the reconcile sweep) and `finalize` (from the
# inference service when a slide's last shard is counted, or from the sweep) messages to the slide
# service; its shard messages go to the jobs topic above (healer_core/topics.py routes by task).

resource "google_pubsub_topic" "slides" {
  project = var.project_id
  name    = var.slides_topic_name
  labels  = local.labels

  # Identifiers only ({job_id, bucket, name, generation, task}); a day of retention, like jobs.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "slides_dead_letter" {
  project = var.project_id
  name    = "${var.slides_topic_name}-dead-letter"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "slides_push" {
  project = var.project_id
  name    = "${var.slides_topic_name}-push"
  topic   = google_pubsub_topic.slides.id
  labels  = local.labels

  # ack deadline = the slide service's request timeout (slide_service.tf): a tiling request never
  # outlives its delivery, so a slide is not redelivered while it is still being tiled.
  ack_deadline_seconds       = local.slide_timeout_seconds
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }

  # 429 (one slide per instance and every instance busy, or the slide's lease held) and 503 back
  # off 10 s → 600 s, as for jobs.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.slides_dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  push_config {
    push_endpoint = "${local.slide_url}/pubsub/push"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.slide_url
    }
  }

  depends_on = [
    google_cloud_run_v2_service.slide_service,
    google_cloud_run_v2_service_iam_member.push_invokes_slide_service,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_slide_dead_letters,
    google_service_account_iam_member.pubsub_agent_mints_push_token,
  ]
}

# Slide dead letters are pushed to the slide service, which settles the slide job (failed with
# dead_lettered, or back in flight) so nothing is lost silently.
resource "google_pubsub_subscription" "slides_dead_letter_push" {
  #checkov:skip=CKV_HEALER_2:This is the dead-letter path itself; slides_dead_letter_hold keeps every message for 7 days.
  project = var.project_id
  name    = "${var.slides_topic_name}-dead-letter-push"
  topic   = google_pubsub_topic.slides_dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  push_config {
    push_endpoint = "${local.slide_url}/pubsub/dead-letter"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.slide_url
    }
  }

  depends_on = [
    google_cloud_run_v2_service.slide_service,
    google_cloud_run_v2_service_iam_member.push_invokes_slide_service,
    google_service_account_iam_member.pubsub_agent_mints_push_token,
  ]
}

# Every slide dead letter stays inspectable and replayable for 7 days, like the jobs ones.
resource "google_pubsub_subscription" "slides_dead_letter_hold" {
  project = var.project_id
  name    = "${var.slides_topic_name}-dead-letter-hold"
  topic   = google_pubsub_topic.slides_dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# Why: Pub/Sub's agent moves slide messages that ran out of deliveries to this dead-letter topic…
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_slide_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.slides_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

# Why: …and acknowledges the forwarded message on the slides subscription (only that one).
resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_slides" {
  project      = var.project_id
  subscription = google_pubsub_subscription.slides_push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
