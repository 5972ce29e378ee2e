# Provider and backend requirements for the Healer root module.
terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.40" # GA Cloud Run GPU fields (node_selector, gpu_zonal_redundancy_disabled)
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.40" # google_project_service_identity (service-agent creation) lives here
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.12" # time_sleep: wait for service-agent IAM to propagate on a fresh project
    }
  }

  # State lives in a GCS bucket created before the first apply (docs/DEPLOY.md).
  # Configure it at init time so no project-specific value is committed:
  #   terraform init -backend-config="bucket=$TF_STATE_BUCKET" -backend-config="prefix=healer"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
