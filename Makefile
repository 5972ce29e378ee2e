# Healer developer entry points. Two commands matter on a fresh machine:
#   make demo   the whole pipeline on this machine (emulators + function + service), verdicts printed
#   make test   everything CI runs
# Each installs what it needs first (a virtualenv in .venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU wheel on this machine; the inference image installs a CUDA build instead.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
# Feature makefiles add their own targets, and prerequisites of `make test` via TEST_DEPS.
TEST_DEPS :=
-include make/*.mk
.PHONY: help venv demo up down status test test-fast lint typecheck clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml ingest_function/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[model,dev]"
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

TYPED := healer_core healer_media ingest_function/healer_ingest inference_service healer console/backend

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

