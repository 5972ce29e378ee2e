# Deployment targets: function bundle, Terraform, Cloud Build, environments, promotion.
# Included by the main Makefile (`-include make/*.mk`), which defines PYTHON and PY.
#
# Two ways to say where to deploy (docs/DEPLOY.md walks through both):
#   ENV=dev|staging|prod   everything comes from terraform/envs/<env>.tfvars (project_id, region,
#                          tf_state_bucket, names); state lives under healer/<env> in that bucket.
#   no ENV                 the seed's environment variables: PROJECT_ID (required), REGION,
#                          REPOSITORY_NAME, SERVICE_NAME, MODEL_ID, TF_STATE_BUCKET, optional TFVARS.

TERRAFORM ?= terraform
ENVS := dev staging prod
# Environments that only receive images another environment ran (make promote), never a fresh build.
PROMOTE_ONLY_ENVS ?= prod

# `key = "value"` of a tfvars file (the settings make needs; terraform reads the whole file).
tfvar = $(shell sed -nE 's/^$(1)[[:space:]]*=[[:space:]]*"([^"]*)".*/\1/p' $(2) 2>/dev/null)

ifneq ($(ENV),)
ENV_FILE := terraform/envs/$(ENV).tfvars
ifeq ($(wildcard $(ENV_FILE)),)
$(error ENV=$(ENV): there is no $(ENV_FILE) (environments: $(ENVS)))
endif
# The file decides. A PROJECT_ID (etc.) exported for another environment must not redirect this
# deploy, so a different value from the shell is an error, not an override.
ENV_SETTINGS := PROJECT_ID=project_id REGION=region TF_STATE_BUCKET=tf_state_bucket \
	REPOSITORY_NAME=repository_name SERVICE_NAME=service_name MODEL_ID=model_id \
	NAME_PREFIX=name_prefix HF_SECRET=hf_token_secret_id CONSOLE_SERVICE_NAME=console_service_name \
	SLIDE_SERVICE_NAME=slide_service_name
$(foreach s,$(ENV_SETTINGS),$(eval $(firstword $(subst =, ,$(s)))_FROM_ENV := $(call tfvar,$(lastword $(subst =, ,$(s))),$(ENV_FILE))))
$(foreach s,$(ENV_SETTINGS),$(eval _v := $(firstword $(subst =, ,$(s))))$(if $(and $(filter environment command line,$(origin $(_v))),$($(_v)_FROM_ENV),$(filter-out $($(_v)_FROM_ENV),$($(_v)))),$(error $(_v)=$($(_v)) conflicts with $(ENV_FILE) ($($(_v)_FROM_ENV)): unset it, or edit the file)))
PROJECT_ID := $(PROJECT_ID_FROM_ENV)
TF_STATE_BUCKET := $(TF_STATE_BUCKET_FROM_ENV)
REGION := $(or $(REGION_FROM_ENV),europe-west1)
REPOSITORY_NAME := $(or $(REPOSITORY_NAME_FROM_ENV),healer-medgemma)
SERVICE_NAME := $(or $(SERVICE_NAME_FROM_ENV),healer-medgemma-service)
MODEL_ID := $(or $(MODEL_ID_FROM_ENV),google/medgemma-1.5-4b-it)
NAME_PREFIX := $(or $(NAME_PREFIX_FROM_ENV),healer)
HF_SECRET := $(or $(HF_SECRET_FROM_ENV),healer-hf-token)
CONSOLE_SERVICE_NAME := $(or $(CONSOLE_SERVICE_NAME_FROM_ENV),healer-console)
SLIDE_SERVICE_NAME := $(or $(SLIDE_SERVICE_NAME_FROM_ENV),healer-slide-service)
TFVARS := envs/$(ENV).tfvars
TF_STATE_PREFIX := healer/$(ENV)
ifneq ($(and $(filter deploy,$(MAKECMDGOALS)),$(filter $(ENV),$(PROMOTE_ONLY_ENVS))),)
ifeq ($(FORCE_BUILD),)
$(error $(ENV) runs only images another environment ran: make promote ENV=$(ENV) FROM=staging (FORCE_BUILD=1 to build anyway))
endif
endif
endif

# Without ENV: the seed's names (and variables.tf's defaults).
REGION ?= europe-west1
REPOSITORY_NAME ?= healer-medgemma
SERVICE_NAME ?= healer-medgemma-service
CONSOLE_SERVICE_NAME ?= healer-console
SLIDE_SERVICE_NAME ?= healer-slide-service
MODEL_ID ?= google/medgemma-1.5-4b-it
TF_STATE_BUCKET ?=
TF_STATE_PREFIX ?= healer
NAME_PREFIX ?= healer
HF_SECRET ?= healer-hf-token
# Optional var file relative to terraform/, e.g. TFVARS=envs/dev.tfvars
TFVARS ?=

# One tag for the images of one `make deploy`/`make build` (computed once per make run).
TAG := $(shell date -u +%Y%m%dt%H%M%S)-$(shell git rev-parse --short=12 HEAD 2>/dev/null || echo nogit)
IMAGE_REPO = $(REGION)-docker.pkg.dev/$(PROJECT_ID)/$(REPOSITORY_NAME)
BUILD_STAGING = gs://$(PROJECT_ID)-$(NAME_PREFIX)-build/source
# The Cloud Build account of a stage (terraform/build.tf): ci, image or deploy.
BUILD_SA = projects/$(PROJECT_ID)/serviceAccounts/$(NAME_PREFIX)-$(1)@$(PROJECT_ID).iam.gserviceaccount.com
# Not spelled $(MAKE): make runs lines naming it even under -n, and these lines submit builds.
SUBMAKE = $(MAKE) --no-print-directory
SUBMIT = gcloud builds submit . --project="$(PROJECT_ID)" --region="$(REGION)" --gcs-source-staging-dir="$(BUILD_STAGING)"

# Every variable make knows, on every terraform command (apply, destroy, bootstrap): an apply
# without tf_state_bucket would remove the deploy account's grant on the state bucket.
TF_VARS = $(if $(TFVARS),-var-file=$(TFVARS)) \
	-var="project_id=$(PROJECT_ID)" -var="region=$(REGION)" \
	-var="repository_name=$(REPOSITORY_NAME)" -var="service_name=$(SERVICE_NAME)" \
	-var="model_id=$(MODEL_ID)" -var="name_prefix=$(NAME_PREFIX)" \
	-var="tf_state_bucket=$(TF_STATE_BUCKET)" -var="hf_token_secret_id=$(HF_SECRET)"
IMAGE_SUBSTITUTIONS = _REGION=$(REGION),_REPOSITORY_NAME=$(REPOSITORY_NAME),_MODEL_ID=$(MODEL_ID),$\
_HF_SECRET=$(HF_SECRET),_TAG=$(TAG)
DEPLOY_SUBSTITUTIONS = _REGION=$(REGION),_REPOSITORY_NAME=$(REPOSITORY_NAME),_SERVICE_NAME=$(SERVICE_NAME),$\
_MODEL_ID=$(MODEL_ID),_TF_STATE_BUCKET=$(TF_STATE_BUCKET),_TF_STATE_PREFIX=$(TF_STATE_PREFIX),_TFVARS=$(TFVARS),$\
_NAME_PREFIX=$(NAME_PREFIX),_HF_SECRET=$(HF_SECRET)

# What has to exist before the first build (docs/DEPLOY.md step 4), applied by an Owner;
# Terraform adds their dependencies (APIs, the runtime accounts the deploy account may act as).
BOOTSTRAP_TARGETS = google_project_service.apis \
	google_service_account.ci google_service_account.image_build google_service_account.deploy \
	google_project_iam_member.ci_logs google_project_iam_member.image_build_logs google_project_iam_member.deploy_logs \
	google_storage_bucket.build_staging google_storage_bucket_iam_member.ci_reads_staging \
	google_storage_bucket_iam_member.image_build_reads_staging google_storage_bucket_iam_member.deploy_reads_staging \
	google_storage_bucket_iam_member.deploy_uses_tf_state google_project_iam_member.deploy_roles \
	google_project_iam_custom_role.secret_metadata_admin google_project_iam_member.deploy_manages_secret_metadata \
	google_service_account_iam_member.deploy_acts_as \
	google_artifact_registry_repository.images google_artifact_registry_repository_iam_member.image_build_pushes_images \
	google_secret_manager_secret.hf_token google_secret_manager_secret_iam_member.image_build_reads_hf_token

.PHONY: function-bundle tf-fmt test-terraform deploy-check tf-init bootstrap hf-token tf-apply tf-destroy \
	cloud-test build deploy apply-images promote

function-bundle: ## assemble build/function/ (ingest_function + healer_core) for Terraform to zip (stdlib only)
	$(PYTHON) scripts/bundle_function.py --out build/function

tf-fmt: ## format the Terraform module and the checkov fixtures
	$(TERRAFORM) fmt -recursive terraform tests/terraform/fixtures

test-terraform: $(STAMP) tools provider-schemas ## fmt, validate, provider schema, HCL policy, checkov, hadolint, locks, bundle
	$(PY) -m pytest -q -p no:cacheprovider tests/terraform

deploy-check:
	@test -n "$(PROJECT_ID)" && test "$(PROJECT_ID)" != "healer-local" || \
		{ echo "set ENV=dev|staging|prod, or export PROJECT_ID=<your Google Cloud project> (docs/DEPLOY.md)" >&2; exit 2; }
	@command -v gcloud >/dev/null || { echo "the Google Cloud CLI (gcloud) is required" >&2; exit 2; }

tf-init: deploy-check ## terraform init with the GCS state (TF_STATE_BUCKET, prefix healer/<ENV>)
	@test -n "$(TF_STATE_BUCKET)" || { echo "set tf_state_bucket in $(or $(ENV_FILE),your tfvars) or export TF_STATE_BUCKET" >&2; exit 2; }
	$(TERRAFORM) -chdir=terraform init -input=false -reconfigure \
		-backend-config="bucket=$(TF_STATE_BUCKET)" -backend-config="prefix=$(TF_STATE_PREFIX)"

bootstrap: tf-init ## first apply, as an Owner: APIs, registry, token secret, the three build accounts
	$(TERRAFORM) -chdir=terraform apply -input=false $(TF_VARS) $(addprefix -target=,$(BOOTSTRAP_TARGETS))

hf-token: deploy-check ## store $HF_TOKEN (or the seed's $MY_HF_TOKEN) as a new version of the token secret
	@token="$${HF_TOKEN:-$${MY_HF_TOKEN:-}}"; test -n "$$token" || { echo "export HF_TOKEN first" >&2; exit 2; }; \
	printf '%s' "$$token" | gcloud secrets versions add "$(HF_SECRET)" --project="$(PROJECT_ID)" --data-file=- >/dev/null \
	&& echo "hf-token: new version of secret $(HF_SECRET) added"

tf-apply: tf-init function-bundle ## apply the whole module from this machine (IMAGE=/CONSOLE_IMAGE=/SLIDE_IMAGE= …@sha256:… to pin)
	$(TERRAFORM) -chdir=terraform apply -input=false $(TF_VARS) \
		$(if $(IMAGE),-var="image=$(IMAGE)") $(if $(CONSOLE_IMAGE),-var="console_image=$(CONSOLE_IMAGE)") \
		$(if $(SLIDE_IMAGE),-var="slide_image=$(SLIDE_IMAGE)")

tf-destroy: tf-init function-bundle ## destroy an environment (after deletion_protection = false and force_destroy = true)
	$(TERRAFORM) -chdir=terraform destroy -input=false $(TF_VARS)

cloud-test: deploy-check ## Cloud Build: the tests, as the ci account (build logs only)
	$(SUBMIT) --config=cloudbuild/test.yaml --service-account="$(call BUILD_SA,ci)"

build: deploy-check ## Cloud Build: build and push the three images, as the image account (the seed's build.sh)
	$(SUBMIT) --config=cloudbuild/images.yaml --service-account="$(call BUILD_SA,image)" \
		--substitutions="$(IMAGE_SUBSTITUTIONS)"

# Digest of an image tag in this environment's repository.
digest_of = $$(gcloud artifacts docker images describe "$(IMAGE_REPO)/$(1):$(TAG)" --project="$(PROJECT_ID)" \
	--format='value(image_summary.digest)')

deploy: deploy-check ## tests, then images, then terraform apply of their digests: three builds, three accounts
	$(SUBMAKE) cloud-test
	$(SUBMAKE) build TAG=$(TAG)
	image=$(call digest_of,healer-inference) && console=$(call digest_of,healer-console) && \
	slide=$(call digest_of,healer-slide) && \
	test -n "$$image" && test -n "$$console" && test -n "$$slide" && \
	$(SUBMAKE) apply-images IMAGE="$(IMAGE_REPO)/healer-inference@$$image" \
		CONSOLE_IMAGE="$(IMAGE_REPO)/healer-console@$$console" SLIDE_IMAGE="$(IMAGE_REPO)/healer-slide@$$slide"

apply-images: deploy-check ## Cloud Build: terraform apply of IMAGE, CONSOLE_IMAGE and SLIDE_IMAGE (by digest), as the deploy account
	@case "$(IMAGE) $(CONSOLE_IMAGE) $(SLIDE_IMAGE)" in *@sha256:*\ *@sha256:*\ *@sha256:*) ;; \
		*) echo "IMAGE, CONSOLE_IMAGE and SLIDE_IMAGE must be <repository>/<name>@sha256:<digest>" >&2; exit 2;; esac
	@test -n "$(TF_STATE_BUCKET)" || { echo "set tf_state_bucket in $(or $(ENV_FILE),your tfvars) or export TF_STATE_BUCKET" >&2; exit 2; }
	$(SUBMIT) --config=cloudbuild/deploy.yaml --service-account="$(call BUILD_SA,deploy)" \
		--substitutions="$(DEPLOY_SUBSTITUTIONS),_IMAGE=$(IMAGE),_CONSOLE_IMAGE=$(CONSOLE_IMAGE),_SLIDE_IMAGE=$(SLIDE_IMAGE)"

# The source environment of a promotion, read from its own tfvars.
FROM_FILE = terraform/envs/$(FROM).tfvars
FROM_PROJECT = $(call tfvar,project_id,$(FROM_FILE))
FROM_REGION = $(or $(call tfvar,region,$(FROM_FILE)),europe-west1)
FROM_SERVICE = $(or $(call tfvar,service_name,$(FROM_FILE)),healer-medgemma-service)
FROM_CONSOLE = $(or $(call tfvar,console_service_name,$(FROM_FILE)),healer-console)
FROM_SLIDE = $(or $(call tfvar,slide_service_name,$(FROM_FILE)),healer-slide-service)
# The image a source service runs: its template is a digest reference (cloudbuild/deploy.yaml
# refuses anything else), and its newest revision must be the one serving.
running_image = $$(gcloud run services describe "$(1)" --project="$(FROM_PROJECT)" --region="$(FROM_REGION)" \
	--format='value(status.latestReadyRevisionName,status.latestCreatedRevisionName,spec.template.spec.containers[0].image)' \
	| awk '$$1 == $$2 && $$3 ~ /@sha256:/ { print $$3 }')

promote: deploy-check ## ENV=<target> FROM=<source>: deploy the three image digests FROM runs, without rebuilding
	@test -n "$(ENV)" && test -f "$(FROM_FILE)" && test "$(FROM)" != "$(ENV)" || \
		{ echo "usage: make promote ENV=prod FROM=staging (both terraform/envs/<env>.tfvars)" >&2; exit 2; }
	image=$(call running_image,$(FROM_SERVICE)) && console=$(call running_image,$(FROM_CONSOLE)) && \
	slide=$(call running_image,$(FROM_SLIDE)) && \
	test -n "$$image" && test -n "$$console" && test -n "$$slide" || \
		{ echo "$(FROM) serves no settled digest-pinned revision" >&2; exit 2; }; \
	echo "promoting $$image, $$console and $$slide from $(FROM) to $(ENV)"; \
	gcloud builds submit --no-source --project="$(PROJECT_ID)" --region="$(REGION)" \
		--config=cloudbuild/promote.yaml --service-account="$(call BUILD_SA,image)" \
		--substitutions="_REGION=$(REGION),_REPOSITORY_NAME=$(REPOSITORY_NAME),_FROM_IMAGE=$$image,_FROM_CONSOLE_IMAGE=$$console,_FROM_SLIDE_IMAGE=$$slide,_TAG=promoted-$(TAG)" && \
	$(SUBMAKE) apply-images IMAGE="$(IMAGE_REPO)/healer-inference@$${image##*@}" \
		CONSOLE_IMAGE="$(IMAGE_REPO)/healer-console@$${console##*@}" SLIDE_IMAGE="$(IMAGE_REPO)/healer-slide@$${slide##*@}"
