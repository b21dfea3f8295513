# One entry point for everything: `make demo` then `make test` work on a fresh clone (they set up first).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PY := .venv/bin/python
SAM := .venv-sam/bin/sam
# The app venv, the tests and `sam build` all run on Python 3.13, the Lambda runtime (template.yaml).
# `sam build` without a container needs a Python of the runtime's exact minor version on PATH.
PY313_BIN ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin) $(wildcard /root/.pyenv/versions/3.13*/bin))
SAM_ENV := SAM_CLI_TELEMETRY=0 PATH="$(PY313_BIN):$$PATH"
# An installed 3.13 if there is one (uv would otherwise try to download a managed Python).
PY313 := $(or $(firstword $(wildcard $(PY313_BIN)/python3.13)),3.13)

.PHONY: help setup setup-sam run demo chaos test screenshots lint bench probe build validate deploy openapi sam-env requirements uv clean

help:
	@echo "setup      app venv (.venv) with uv"
	@echo "setup-sam  aws-sam-cli in its own venv (.venv-sam)"
	@echo "run        local stack on http://127.0.0.1:$${PORT:-3000} (PORT, ADMIN_TOKEN, SANDBOX=0|1)"
	@echo "demo       drive both flows end to end against the local stack and print the results"
	@echo "chaos      1,000+ events through the local stack with every fault injected (SEED, EVENTS)"
	@echo "test       pytest (browser tests need Debian's chromium: apt-get install -y chromium)"
	@echo "screenshots  browser tests, saving the page's screenshots to docs/screenshots/"
	@echo "lint       ruff check, ruff format --check, mypy (layer), cfn-lint"
	@echo "bench      benchmark"
	@echo "probe      check the connector's assumptions against live accounts (ALFACRM_*, UIS_ACCESS_TOKEN; ARGS=--write-contact)"
	@echo "build      sam build (python3.13 on PATH, no container)"
	@echo "validate   sam validate --lint"
	@echo "deploy     sam deploy (samconfig.toml)"
	@echo "openapi    regenerate the OpenAPI document"
	@echo "sam-env    regenerate events/env.json (sam local invoke --env-vars)"
	@echo "requirements  layers/shared/requirements.txt from uv.lock (after uv add / uv lock)"

uv:
	@command -v uv >/dev/null 2>&1 || test -x "$$HOME/.local/bin/uv" || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

# The stamp makes test/demo/run depend on an up-to-date venv without re-syncing every time.
.venv/.stamp: pyproject.toml uv.lock | uv
	PATH="$$HOME/.local/bin:$$PATH" uv sync --frozen --python $(PY313)
	@touch $@

setup: .venv/.stamp

.venv-sam/.stamp: | uv
	PATH="$$HOME/.local/bin:$$PATH" uv venv --allow-existing .venv-sam --python $(PY313)
	PATH="$$HOME/.local/bin:$$PATH" uv pip install --python .venv-sam aws-sam-cli
	@touch $@

setup-sam: .venv-sam/.stamp

run: .venv/.stamp
	$(PY) -m tools.localstack

demo: .venv/.stamp
	@$(PY) -m tools.demo

chaos: .venv/.stamp
	PORT=$${PORT:-3500} $(PY) -m tools.chaos --events $${EVENTS:-1000} $${SEED:+--seed $$SEED}

test: .venv/.stamp
	.venv/bin/pytest

screenshots: .venv/.stamp
	UPDATE_SCREENSHOTS=1 .venv/bin/pytest tests/browser

lint: .venv/.stamp
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/cfn-lint template.yaml

bench: .venv/.stamp
	$(PY) -m tools.bench

probe: .venv/.stamp
	PYTHONPATH=layers/shared/python $(PY) -m tools.probe $(ARGS)

openapi: .venv/.stamp
	$(PY) -m tools.openapi

sam-env: .venv/.stamp
	$(PY) -m tools.localstack.samenv

# The layer installs exactly the locked runtime versions (tests/stack/test_layer.py checks the file is current).
requirements: | uv
	PATH="$$HOME/.local/bin:$$PATH" uv export --frozen --no-dev --no-hashes > layers/shared/requirements.txt

build: .venv-sam/.stamp
	$(SAM_ENV) $(SAM) build

validate: .venv-sam/.stamp
	$(SAM_ENV) $(SAM) validate --lint

deploy: build
	$(SAM_ENV) $(SAM) deploy

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
