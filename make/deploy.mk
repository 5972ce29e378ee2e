# Deployment targets: function bundle, policy tools, Terraform, Cloud Build.
# Included by the main Makefile (`include make/*.mk`), which defines PY.
#
# Deploy settings come from the environment with the seed's names:
#   PROJECT_ID (required), REGION, REPOSITORY_NAME, SERVICE_NAME, MODEL_ID, TF_STATE_BUCKET.
# docs/DEPLOY.md walks through them.

PY ?= .venv/bin/python
TERRAFORM ?= terraform
TOOLS_VENV ?= .venv-tools
TOOLS_PYTHON ?= $(shell command -v python3.11 || command -v python3)
TOOLS_STAMP := $(TOOLS_VENV)/.installed

REGION ?= europe-west1
REPOSITORY_NAME ?= healer-medgemma
SERVICE_NAME ?= healer-medgemma-service
MODEL_ID ?= google/medgemma-4b-it
TF_STATE_BUCKET ?=
TF_STATE_PREFIX ?= healer
NAME_PREFIX ?= healer
HF_SECRET ?= healer-hf-token
# Optional var file relative to terraform/, e.g. TFVARS=envs/dev.tfvars
TFVARS ?=

BUILD_SA = $(NAME_PREFIX)-build@$(PROJECT_ID).iam.gserviceaccount.com
BUILD_STAGING = gs://$(PROJECT_ID)-$(NAME_PREFIX)-build/source
TF_VARS = $(if $(TFVARS),-var-file=$(TFVARS)) \
	-var="project_id=$(PROJECT_ID)" -var="region=$(REGION)" \
	-var="repository_name=$(REPOSITORY_NAME)" -var="service_name=$(SERVICE_NAME)" \
	-var="model_id=$(MODEL_ID)" -var="name_prefix=$(NAME_PREFIX)" \
	-var="tf_state_bucket=$(TF_STATE_BUCKET)" -var="hf_token_secret_id=$(HF_SECRET)"
BUILD_SUBSTITUTIONS = _REGION=$(REGION),_REPOSITORY_NAME=$(REPOSITORY_NAME),_SERVICE_NAME=$(SERVICE_NAME),$\
_MODEL_ID=$(MODEL_ID),_TF_STATE_BUCKET=$(TF_STATE_BUCKET),_TF_STATE_PREFIX=$(TF_STATE_PREFIX),_TFVARS=$(TFVARS),$\
_NAME_PREFIX=$(NAME_PREFIX),_HF_SECRET=$(HF_SECRET)

# What the build account needs before its first build (docs/DEPLOY.md step 4); Terraform adds
# their dependencies (APIs, the accounts it may act as).
BOOTSTRAP_TARGETS = google_project_service.apis google_service_account.build \
	google_project_iam_member.build_logs google_project_iam_member.build_deploys \
	google_service_account_iam_member.build_acts_as google_storage_bucket.build_staging \
	google_storage_bucket_iam_member.build_reads_staging google_storage_bucket_iam_member.build_uses_tf_state \
	google_artifact_registry_repository.images google_artifact_registry_repository_iam_member.build_pushes_images \
	google_secret_manager_secret.hf_token google_secret_manager_secret_iam_member.build_reads_hf_token

.PHONY: function-bundle tools tf-fmt test-terraform deploy-check tf-init bootstrap hf-token tf-apply build deploy

## function-bundle: assemble build/function/ (ingest_function + healer_core) for Terraform to zip
function-bundle:
	$(PY) scripts/bundle_function.py --out build/function

## tools: checkov in its own virtualenv (.venv-tools); idempotent
tools: $(TOOLS_STAMP)
TEST_DEPS += tools

$(TOOLS_STAMP): make/tools-requirements.txt
	@test -n "$(TOOLS_PYTHON)" || { echo "tools: no python3 found" >&2; exit 1; }
	@test -x $(TOOLS_VENV)/bin/python || $(TOOLS_PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r make/tools-requirements.txt
	@touch $@

## tf-fmt: format the Terraform module and the checkov fixtures
tf-fmt:
	$(TERRAFORM) fmt -recursive terraform tests/terraform/fixtures

## test-terraform: fmt, validate (when providers exist), HCL policy, checkov, Dockerfile, bundle
test-terraform: tools
	$(PY) -m pytest -q -p no:cacheprovider tests/terraform

deploy-check:
	@test -n "$(PROJECT_ID)" && test "$(PROJECT_ID)" != "healer-local" || \
		{ echo "export PROJECT_ID=<your Google Cloud project> first (docs/DEPLOY.md)" >&2; exit 2; }
	@command -v gcloud >/dev/null || { echo "the Google Cloud CLI (gcloud) is required" >&2; exit 2; }

## tf-init: terraform init with the GCS state bucket (TF_STATE_BUCKET)
tf-init: deploy-check
	@test -n "$(TF_STATE_BUCKET)" || { echo "export TF_STATE_BUCKET=<state bucket> first" >&2; exit 2; }
	$(TERRAFORM) -chdir=terraform init -input=false -reconfigure \
		-backend-config="bucket=$(TF_STATE_BUCKET)" -backend-config="prefix=$(TF_STATE_PREFIX)"

## bootstrap: first apply — APIs, registry, token secret and the build account (before any image exists)
bootstrap: tf-init
	$(TERRAFORM) -chdir=terraform apply -input=false $(TF_VARS) $(addprefix -target=,$(BOOTSTRAP_TARGETS))

## hf-token: store $HF_TOKEN (or the seed's $MY_HF_TOKEN) as a new version of the token secret
hf-token: deploy-check
	@token="$${HF_TOKEN:-$${MY_HF_TOKEN:-}}"; test -n "$$token" || { echo "export HF_TOKEN first" >&2; exit 2; }; \
	printf '%s' "$$token" | gcloud secrets versions add "$(HF_SECRET)" --project="$(PROJECT_ID)" --data-file=- >/dev/null \
	&& echo "hf-token: new version of secret $(HF_SECRET) added"

## tf-apply: apply the whole module from this machine (needs an image; IMAGE=... to pin one)
tf-apply: tf-init function-bundle
	$(TERRAFORM) -chdir=terraform apply -input=false $(TF_VARS) $(if $(IMAGE),-var="image=$(IMAGE)")

## build: Cloud Build: tests, build and push the image — no deploy (the seed's build.sh)
build: deploy-check
	gcloud builds submit . --project="$(PROJECT_ID)" --region="$(REGION)" --config=cloudbuild.yaml \
		--service-account="projects/$(PROJECT_ID)/serviceAccounts/$(BUILD_SA)" \
		--gcs-source-staging-dir="$(BUILD_STAGING)" \
		--substitutions="$(BUILD_SUBSTITUTIONS),_APPLY=false"

## deploy: Cloud Build: tests, image, push, then terraform apply with the new digest (the seed's deploy.sh)
deploy: deploy-check
	@test -n "$(TF_STATE_BUCKET)" || { echo "export TF_STATE_BUCKET=<state bucket> first" >&2; exit 2; }
	gcloud builds submit . --project="$(PROJECT_ID)" --region="$(REGION)" --config=cloudbuild.yaml \
		--service-account="projects/$(PROJECT_ID)/serviceAccounts/$(BUILD_SA)" \
		--gcs-source-staging-dir="$(BUILD_STAGING)" \
		--substitutions="$(BUILD_SUBSTITUTIONS),_APPLY=true"
