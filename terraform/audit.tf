# Who read which image: Data Access audit logs for Cloud Storage record every object read and
# write with the caller's identity. Uploads may be patient material, so this is on by default.
# (It also stands in for legacy bucket usage logs; see tests/terraform/test_checkov.py.)

resource "google_project_iam_audit_config" "storage_data_access" {
  count = var.storage_data_access_logs ? 1 : 0

  project = var.project_id
  service = "storage.googleapis.com"

  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
