# Harbourgrid hub — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test services lint typecheck bench bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hub demo

# Installs the real services the integration tests start (Debian packages), when missing.
services:
	@missing=""; \
	for b in mosquitto:mosquitto mosquitto_sub:mosquitto-clients influxd:influxdb \
	         victoria-metrics:victoria-metrics socat:socat gpsdecode:gpsd-clients chromium:chromium; do \
	  bin=$${b%%:*}; pkg=$${b##*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: $(STAMP) services
	$(BIN)/ruff check hub drivers sim tests bench dashboards deploy
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check hub drivers sim tests bench dashboards deploy
	$(BIN)/ruff format --check hub drivers sim tests bench dashboards deploy

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Offline bundle for a gateway: `make bundle PLATFORM=aarch64` (x86_64, aarch64, armv7l) writes
# dist/harbourgrid-hub-<version>-<platform>.tar.gz for `install.sh --offline`.
PLATFORM ?= $(shell uname -m)
bundle: $(STAMP)
	$(BIN)/python deploy/bundle.py --platform $(PLATFORM) --out dist

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
