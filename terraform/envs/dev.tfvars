# Example settings for a development environment. Copy, then set project_id (and, for
# `make deploy`, export the same values as PROJECT_ID / REGION / …; docs/DEPLOY.md).
project_id = "my-healer-dev"
region     = "europe-west1"

# The seed's names.
repository_name = "healer-medgemma"
service_name    = "healer-medgemma-service"
model_id        = "google/medgemma-4b-it"

# Throw-away environment: allow destroy.
deletion_protection = false
force_destroy       = true

# GPU: scale to zero, at most one L4.
min_instances  = 0
max_instances  = 1
max_batch_size = 8

# Delete uploads after 30 days; finished jobs expire via Firestore TTL.
inbox_lifecycle_rules = [
  {
    action    = { type = "Delete" }
    condition = { age = 30 }
  },
]
job_ttl_days = 90

# The state bucket created in docs/DEPLOY.md step 2 (lets the build account run terraform).
tf_state_bucket = "my-healer-dev-tfstate"

# notification_channels = ["projects/my-healer-dev/notificationChannels/1234567890"]
