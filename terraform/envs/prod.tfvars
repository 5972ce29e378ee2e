# Production: only ever receives image digests that staging ran (`make promote ENV=prod
# FROM=staging`; `make deploy ENV=prod` refuses to build). State under healer/prod in
# tf_state_bucket. tests/terraform/test_environments.py checks the protections below stay on.
project_id = "my-healer-prod"
region     = "europe-west1"

tf_state_bucket = "my-healer-prod-tfstate"

repository_name = "healer-medgemma"
service_name    = "healer-medgemma-service"
model_id        = "google/medgemma-1.5-4b-it"

# Nothing is deleted by Terraform: the services and the database refuse, buckets must be empty.
deletion_protection = true
force_destroy       = false

# One L4 always warm (no cold start for the first upload of the day); quota for max + min.
min_instances  = 1
max_instances  = 4
max_batch_size = 8

# Uploads are medical material: versioned (an overwrite or delete keeps the old generation),
# encrypted with the lab's own key (the key's admin first grants the deploy account
# roles/cloudkms.admin on this key: docs/DEPLOY.md, "CMEK"), every read audited.
inbox_versioning         = true
inbox_kms_key_name       = "projects/my-healer-prod/locations/europe-west1/keyRings/healer/cryptoKeys/inbox"
storage_data_access_logs = true
job_ttl_days             = 0 # verdicts are kept

# Slides: the work and results buckets use the inbox's key too (they hold tiles, thumbnails and
# heatmaps of the same material); results are versioned and kept. Up to 8 slides tiled at once
# on 4 vCPU each; shards expire after 7 days (work_retention_days).
results_versioning  = true
slide_max_instances = 8

# Alerts reach the on-call channel (create it once in Cloud Monitoring; its full id here).
notification_channels = ["projects/my-healer-prod/notificationChannels/1234567890"]

console_access        = "iap"
console_access_member = "group:pathology@example.org"
