# Firestore (native mode): the jobs collection, the index for "latest verdict of this object",
# and an optional TTL on finished jobs.

resource "google_firestore_database" "main" {
  project     = var.project_id
  name        = var.firestore_database
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"

  # Verdicts are medical screening results: keep 7 days of point-in-time recovery.
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.apis]
}

# "Latest verdict for this object": where bucket == B and name == N order by generation desc.
resource "google_firestore_index" "jobs_by_object" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = var.jobs_collection

  fields {
    field_path = "bucket"
    order      = "ASCENDING"
  }
  fields {
    field_path = "name"
    order      = "ASCENDING"
  }
  fields {
    field_path = "generation"
    order      = "DESCENDING"
  }
}

# Firestore deletes a job document once its `expire_at` timestamp has passed. The code writes
# that field (JOB_TTL_DAYS) only on finished (done/failed) jobs, so running work is never reaped.
resource "google_firestore_field" "jobs_ttl" {
  count = var.job_ttl_days > 0 ? 1 : 0

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = var.jobs_collection
  field      = "expire_at" # written by healer_core/store.py

  ttl_config {}

  # Never queried by this field, and a monotonically increasing timestamp index would hot-spot:
  # no single-field indexes on it.
  index_config {}
}
