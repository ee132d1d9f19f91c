# Harbourgrid hub — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test services image-tools image-tools-arm64 lint typecheck bench bundle image image-test clean

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

test: $(STAMP) services image-tools
	$(BIN)/ruff check hub drivers sim tests bench dashboards deploy
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check hub drivers sim tests bench dashboards deploy
	$(BIN)/ruff format --check hub drivers sim tests bench dashboards deploy

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py $(if $(PROFILE),--profile)

# Offline bundle for a gateway: `make bundle PLATFORM=aarch64` (x86_64, aarch64, armv7l) writes
# dist/harbourgrid-hub-<version>-<platform>.tar.gz for `install.sh --offline`.
PLATFORM ?= $(shell uname -m)
bundle: $(STAMP)
	$(BIN)/python deploy/bundle.py --platform $(PLATFORM) --out dist

# Flashable gateway image: `make image ARCH=amd64` writes dist/harbourgrid-gateway-amd64.img
# (UEFI: shim + GRUB on its EFI System Partition; the test boots it with OVMF). Needs root.
# Downloaded .debs are cached in IMAGE_CACHE/debs, and an image whose inputs did not change is
# not rebuilt. ARCH=arm64 is built without binfmt (deploy/image/arm64/build-arm64.sh: unpack on
# the host, maintainer scripts in qemu-system-aarch64; .debs in IMAGE_CACHE/arm64/debs).
# `make image-test ARCH=arm64` boots it (TCG: far too slow for `make test`, which boot-tests amd64).
ARCH ?= amd64
IMAGE_CACHE ?= $(HOME)/.cache/harbourgrid-image
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
image-tools:
	@missing=""; \
	for b in mmdebstrap:mmdebstrap qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils \
	         mkfs.vfat:dosfstools mcopy:mtools mke2fs:e2fsprogs dumpe2fs:e2fsprogs sfdisk:fdisk \
	         ssh:openssh-client; do \
	  bin=$${b%%:*}; pkg=$${b##*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || [ -x /sbin/$$bin ] || missing="$$missing $$pkg"; \
	done; \
	[ -e /usr/share/OVMF/OVMF_CODE_4M.secboot.fd ] || missing="$$missing ovmf"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

image-tools-arm64: image-tools
	@missing=""; \
	for b in debootstrap:debootstrap qemu-system-aarch64:qemu-system-arm; do \
	  bin=$${b%%:*}; pkg=$${b##*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

ifeq ($(ARCH),arm64)
image: $(STAMP) image-tools-arm64
	$(SUDO) env HARBOURGRID_IMAGE_CACHE=$(IMAGE_CACHE) PYTHON=$(abspath $(BIN)/python) \
	  deploy/image/arm64/build-arm64.sh --out dist

image-test: $(STAMP) image-tools-arm64 services
	$(SUDO) env HARBOURGRID_IMAGE_CACHE=$(IMAGE_CACHE) PYTHON=$(abspath $(BIN)/python) \
	  $(BIN)/pytest -q -s -p no:cacheprovider deploy/image/arm64/test_boot_arm64.py
else
image: $(STAMP) image-tools
	$(SUDO) env HARBOURGRID_IMAGE_CACHE=$(IMAGE_CACHE) PYTHON=$(abspath $(BIN)/python) \
	  deploy/image/build.sh --arch $(ARCH) --out dist

image-test: $(STAMP) image-tools services
	$(SUDO) env HARBOURGRID_IMAGE_CACHE=$(IMAGE_CACHE) \
	  $(BIN)/pytest -q -s -p no:cacheprovider tests/integration/test_image.py
endif

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
