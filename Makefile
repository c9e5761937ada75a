# Waft: every entry point a developer or CI uses. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WAFT := $(VENV)/bin/waft
STAMP := $(VENV)/.installed

.PHONY: run test bench actors models lint venv clean system-deps

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1 2>/dev/null || true
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests drive for real (OCI registry, headless browser); installed only when missing.
system-deps:
	@command -v docker-registry >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-registry >/dev/null; }

actors: venv
	$(PY) actors/build.py

models: venv
	$(PY) models/build.py

lint: venv
	$(VENV)/bin/ruff check src providers tests actors models

test: venv actors models
	$(VENV)/bin/ruff check src providers tests actors models
	$(PY) -m pytest -q tests

run: venv actors models
	$(WAFT) up

bench: venv actors models
	$(PY) -m waft.bench

clean:
	rm -rf build
