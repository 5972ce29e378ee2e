# Alerts: a job or slide message reached its dead-letter topic, jobs or slides are waiting too
# long, the service fails.

locals {
  alert_documentation_suffix = "Runbook: docs/DEPLOY.md#operating. Jobs live in Firestore collection '${var.jobs_collection}'."
}

# A dead-lettered message is a job that failed max_delivery_attempts times, or a burst the
# instances could not take at once (the service then puts the job back in flight): look at it.
resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "Healer: job messages dead-lettered"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "dead_letter_message_count > 0 on ${google_pubsub_subscription.jobs_push.name}"

    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.jobs_push.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_DELTA"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A job message exhausted its ${var.max_delivery_attempts} deliveries. The service fails the job (error.code=dead_lettered) only if it was leased that many times, else puts it back in flight (the job's dead_letters counts it); the message is kept in subscription ${google_pubsub_subscription.dead_letter_hold.name} for 7 days. ${local.alert_documentation_suffix}"
  }
}

# Work is piling up: the service is down, out of GPU quota, or cannot keep up.
resource "google_monitoring_alert_policy" "oldest_unacked" {
  project               = var.project_id
  display_name          = "Healer: oldest unacked job message too old"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "oldest_unacked_message_age > ${var.alert_oldest_unacked_seconds}s on ${google_pubsub_subscription.jobs_push.name}"

    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.jobs_push.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_oldest_unacked_seconds
      duration        = "300s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Job messages are waiting longer than ${var.alert_oldest_unacked_seconds}s. Check the inference service's revisions, GPU quota and max_instances. ${local.alert_documentation_suffix}"
  }
}

# Share of 5xx answers. 503 is also the service's deliberate "transient, retry" answer, so a
# sustained ratio — not a single 5xx — is what pages.
resource "google_monitoring_alert_policy" "service_5xx" {
  project               = var.project_id
  display_name          = "Healer: inference service 5xx ratio"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "5xx / all requests > ${var.alert_5xx_ratio} on ${google_cloud_run_v2_service.inference.name}"

    condition_threshold {
      filter             = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${google_cloud_run_v2_service.inference.name}\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""
      denominator_filter = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${google_cloud_run_v2_service.inference.name}\" AND metric.type = \"run.googleapis.com/request_count\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_5xx_ratio
      duration           = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }

      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "More than ${var.alert_5xx_ratio * 100}% of requests to ${google_cloud_run_v2_service.inference.name} answered 5xx over 5 minutes (CUDA OOM, Cloud Storage or Firestore faults, crash loops). ${local.alert_documentation_suffix}"
  }
}

# The slide path's two: a slide message (tile or finalize) ran out of deliveries, and slides are
# waiting for the slide service. (Shard messages travel on the jobs topic: the alerts above.)
resource "google_monitoring_alert_policy" "slide_dead_letters" {
  project               = var.project_id
  display_name          = "Healer: slide messages dead-lettered"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "dead_letter_message_count > 0 on ${google_pubsub_subscription.slides_push.name}"

    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.slides_push.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_DELTA"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A slide message (tile or finalize) exhausted its ${var.max_delivery_attempts} deliveries to ${google_cloud_run_v2_service.slide_service.name}. The slide service settles the slide job from its dead-letter route; the message is kept in subscription ${google_pubsub_subscription.slides_dead_letter_hold.name} for 7 days. ${local.alert_documentation_suffix}"
  }
}

resource "google_monitoring_alert_policy" "slides_oldest_unacked" {
  project               = var.project_id
  display_name          = "Healer: oldest unacked slide message too old"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "oldest_unacked_message_age > ${var.alert_oldest_unacked_seconds}s on ${google_pubsub_subscription.slides_push.name}"

    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.slides_push.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_oldest_unacked_seconds
      duration        = "300s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Slide messages are waiting longer than ${var.alert_oldest_unacked_seconds}s. Check the slide service's revisions, slide_max_instances and its request timeouts (a slide that cannot tile within 600 s). ${local.alert_documentation_suffix}"
  }
}
