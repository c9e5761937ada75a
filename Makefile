# Waft: every entry point a developer or CI uses. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WAFT := $(VENV)/bin/waft
STAMP := $(VENV)/.installed
# Every distribution of the checkout, editable, at the exact versions of constraints.txt.
PROVIDERS := providers/httpserver/pyproject.toml providers/mlinference/pyproject.toml
INSTALL := -c constraints.txt -e '.[build,dev]' -e providers/httpserver -e 'providers/mlinference[tf,tflite]'
# The models `make models` builds here are the ones `make run`, `make test` and the tools serve (an installed
# waft reads $WAFT_MODELS_DIR, else $WAFT_HOME/models).
export WAFT_MODELS_DIR ?= $(CURDIR)/build/models
# Suite workers (pytest-xdist; one test file stays on one worker): 2 halves the suite's time on 2 cores.
TEST_WORKERS ?= 2

.PHONY: run test bench chaos fuzz actors models lint venv clean system-deps

venv: $(STAMP)

$(STAMP): pyproject.toml $(PROVIDERS) constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1 2>/dev/null || true
	@echo "installing Python packages into $(VENV) (a few minutes on a first run; pip says what it is doing)"
	$(PY) -m pip install --progress-bar on $(INSTALL)
	touch $(STAMP)

# Debian packages the tests drive for real (OCI registry, headless browser); installed only when missing, as root
# or through sudo; without either, the exact command to run is printed and the target fails.
# Debian bookworm's versions: docker-registry 2.8.2+ds1, chromium 156, libb64-0d 1.2 (perf_analyzer links it).
APT_PACKAGES := docker-registry chromium libb64-0d
system-deps:
	@missing=""; \
	for package in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then sudo=""; \
		elif command -v sudo >/dev/null; then sudo="sudo"; \
		else \
			echo "make test needs the Debian packages$$missing; as root, run: apt-get install -y$$missing" >&2; \
			exit 1; \
		fi; \
		echo "installing Debian packages:$$missing$${sudo:+ (through sudo)}"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || { \
			echo "could not install$$missing; run: sudo apt-get install -y$$missing" >&2; exit 1; }; \
	fi

actors: venv
	$(PY) actors/build.py

models: venv
	$(PY) models/build.py

lint: venv
	$(VENV)/bin/ruff check src providers tests actors models tools

test: venv system-deps actors models
	$(VENV)/bin/ruff check src providers tests actors models tools
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# The whole application on embedded defaults: NATS, bindle (:8080, models pushed), host, dashboard (:4000),
# and the ML app on :8078. Ctrl-C stops everything it started.
run: venv actors models build/cat.jpg
	$(WAFT) up --push-models --app deploy/ml-app.yaml

# A photo for the README's `curl -T build/cat.jpg` lines: scikit-image's sample cat, made offline.
build/cat.jpg: $(STAMP)
	mkdir -p build
	$(PY) -c "import skimage.data, PIL.Image; PIL.Image.fromarray(skimage.data.chelsea()).save('$@', quality=90)"

bench: venv actors models
	$(PY) -m tools.bench

# Long fuzzing of the pre-processor's JPEG/PNG decoders (make test runs 20 000 cases).
fuzz: venv actors
	WAFT_FUZZ_COUNT=500000 $(PY) -m pytest -q tests/preprocessor/test_preprocessor_fuzz.py

# Long fault runs (issue 9): SIGKILLs, NATS restarts, host loss under steady load; then the same for a
# three-member NATS cluster (tools/chaos_cluster.py, issue 17); both write docs/reliability.md.
chaos: venv actors models
	$(PY) -m tools.chaos
	$(PY) -m tools.chaos_cluster

clean:
	rm -rf build
