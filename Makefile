# Healer developer entry points. Two commands matter on a fresh machine:
#   make demo   the whole pipeline on this machine (emulators + function + service), verdicts printed
#   make test   everything CI runs
# Each installs what it needs first (a virtualenv in .venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Everything the venv installs is pinned with hashes in requirements/dev.txt (`make lock` writes
# it from pyproject.toml and requirements/dev.in), including the CPU torch 2.13.0+cpu: the pip
# config of the project's machines finds it in /opt/wheels; elsewhere pass
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu. The image installs a CUDA build instead.
LOCK := requirements/dev.txt
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
# Feature makefiles add their own targets, and prerequisites of `make test` via TEST_DEPS.
TEST_DEPS :=
-include make/*.mk
.PHONY: help venv demo up down status test test-fast lint typecheck clean

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z0-9_-]+):.*## (.*)$$/\1\t\2/' \
		| awk -F'\t' '{printf "  %-18s %s\n", $$1, $$2}'

# The lock, then the project itself without dependencies and without an isolated build environment
# (its build backend, setuptools, comes from the lock too), then a consistency check.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(PIP) install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $@

venv: $(STAMP) ## create .venv with everything (idempotent)

demo: $(STAMP) console-build ## run the whole pipeline locally and print a verdict per sample tile
	$(PY) -m healer.demo

up: $(STAMP) console-build ## start the local stack in the background (logs in .healer/logs)
	$(PY) -m healer.stack up

down: ## stop exactly what `make up` started
	@if [ -x $(PY) ]; then $(PY) -m healer.stack down; fi

status: $(STAMP) ## show the local stack's processes
	$(PY) -m healer.stack status

TYPED := healer_core healer_media healer_push ingest_function/healer_ingest inference_service slide_service healer console/backend tests

lint: $(STAMP) ## ruff (lint and format) and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy $(TYPED)

typecheck: $(STAMP) ## mypy alone
	$(PY) -m mypy $(TYPED)

test: $(STAMP) $(TEST_DEPS) lint ## lint + the whole test suite (emulators started by the tests)
	$(PY) -m pytest

test-fast: $(STAMP) ## tests that start nothing (no emulator, no stack)
	HEALER_TEST_FAST=1 $(PY) -m pytest -m "not emulator"

clean: down ## remove local state (not the venv)
	rm -rf .healer build

