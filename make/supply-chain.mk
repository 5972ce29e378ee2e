# Supply chain: hash-locked dependencies, the tools virtualenv, the offline provider schemas.
#   make lock               regenerate every lock from its inputs (pyproject.toml, *.in; needs PyPI)
#   make lock-upgrade       the same, moving every pin to the newest allowed release
#   make tools              checkov, uv and hadolint in .venv-tools, from make/tools-requirements.txt
#   make provider-schemas   Terraform provider schemas for tests/terraform/test_provider_schema.py
# The list of locks is scripts/lock_requirements.py (LOCKS); tests/terraform/test_locks.py checks,
# offline, that each lock still satisfies its inputs and that every installer uses --require-hashes.

TOOLS_VENV ?= .venv-tools
TOOLS_PYTHON ?= $(shell command -v python3.11 || command -v python3)
TOOLS_STAMP := $(TOOLS_VENV)/.installed
TOOLS_LOCK := make/tools-requirements.txt

.PHONY: tools lock lock-upgrade provider-schemas

tools: $(TOOLS_STAMP) ## checkov, uv and hadolint in their own virtualenv (.venv-tools), from a hash-locked file
TEST_DEPS += tools provider-schemas

$(TOOLS_STAMP): $(TOOLS_LOCK)
	@test -n "$(TOOLS_PYTHON)" || { echo "tools: no python3 found" >&2; exit 1; }
	@test -x $(TOOLS_VENV)/bin/python || $(TOOLS_PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(TOOLS_LOCK)
	@touch $@

lock: $(TOOLS_STAMP) ## regenerate every hash-locked requirements file from pyproject.toml and the *.in files
	$(TOOLS_VENV)/bin/python scripts/lock_requirements.py

lock-upgrade: $(TOOLS_STAMP) ## like lock, but move every pin to the newest release the inputs allow
	$(TOOLS_VENV)/bin/python scripts/lock_requirements.py --upgrade

# Cached outside the clone (~/.cache/healer/provider-schemas, or $HEALER_PROVIDER_SCHEMA_DIR) and
# keyed by the locked package versions: only a lock change downloads again (~150 MB of wheels).
provider-schemas: $(STAMP) ## Terraform provider schemas from the cdktf provider wheels (hash-checked, cached)
	$(PY) scripts/provider_schema.py >/dev/null
