# Development: throw-away, cheap. `make deploy ENV=dev` reads this file (project_id, region,
# tf_state_bucket and the names below) and keeps its state under healer/dev in tf_state_bucket.
# Copy the three env files, set your own project ids and state buckets (docs/DEPLOY.md).
project_id = "my-healer-dev"
region     = "europe-west1"

# The state bucket of this environment (docs/DEPLOY.md step 3); the deploy account may use it.
tf_state_bucket = "my-healer-dev-tfstate"

# The seed's names.
repository_name = "healer-medgemma"
service_name    = "healer-medgemma-service"
model_id        = "google/medgemma-1.5-4b-it"

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

# Slides: a small slide service (2 vCPU, two tiling workers: 556 MiB measured peak), shards kept
# 3 days.
slide_cpu           = "2"
slide_memory        = "1Gi"
slide_max_instances = 2
work_retention_days = 3

# Developers reach the console through `gcloud run services proxy` (works without an organization).
console_access        = "invoker"
console_access_member = "group:healer-dev@example.org"
