# Staging: production's settings at lower cost. `make deploy ENV=staging` builds, tests and
# deploys here; `make promote ENV=prod FROM=staging` then ships the exact image digests staging
# runs to production. State under healer/staging in tf_state_bucket.
project_id = "my-healer-staging"
region     = "europe-west1"

tf_state_bucket = "my-healer-staging-tfstate"

repository_name = "healer-medgemma"
service_name    = "healer-medgemma-service"
model_id        = "google/medgemma-1.5-4b-it"

# Kept between deploys, like production.
deletion_protection = true
force_destroy       = false

min_instances  = 0
max_instances  = 2
max_batch_size = 8

inbox_versioning = true
inbox_lifecycle_rules = [
  {
    action    = { type = "Delete" }
    condition = { age = 30 }
  },
]
job_ttl_days = 30

# Slides: production's service at a smaller scale; results versioned like production's.
slide_max_instances = 2
results_versioning  = true

console_access        = "iap"
console_access_member = "group:healer-staging@example.org"

# Production's image build account copies promoted images from this repository (make promote).
image_readers = ["serviceAccount:healer-image@my-healer-prod.iam.gserviceaccount.com"]
