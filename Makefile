# vigild: the two commands of the README, and the developer targets.
#
#   make run    install everything, then run vigild on its default config
#   make test   install what the tests need, then run them all
#   make bench  the benchmark suites, printed as one table of ratios
#
# Every target is safe to run twice: apt packages are installed only when
# missing, the virtualenv is created once and refreshed when the package
# metadata or the C sources change.

SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Debian/Ubuntu packages: compiler and headers for the C part and for
# systemd-python, the yara CLI the benchmarks compare against, and the
# Debian Python modules the compatibility test runs the scanner under.
APT_PACKAGES := build-essential pkg-config libssl-dev libsystemd-dev \
	python3-dev python3-venv yara python3-yara python3-cffi-backend

NATIVE := $(wildcard native/*.c native/*.h native/*.py)

.PHONY: run test bench deps bench-deps venv lint unit clean

# Real parts the fleet tests run on loopback only (tests/integration/test_fleet.py):
# node_exporter's textfile collector, promtool, journal-upload/-remote. Their
# packaged services are kept from starting (policy-rc.d while installing) and
# disabled: the tests start and stop their own instances by pid.
APT_QUIET := prometheus-node-exporter prometheus systemd-journal-remote
QUIET_UNITS := prometheus.service prometheus-node-exporter.service \
	systemd-journal-remote.socket systemd-journal-upload.service

# $(call apt_quiet,PACKAGES,UNITS): install those of PACKAGES that are
# missing (as root), their packaged services kept from starting by a
# policy-rc.d that denies every start while apt runs; then disable UNITS
# (systemctl works on the unit files without a running systemd;
# deb-systemd-helper refuses to run outside a maintainer script).
define apt_quiet
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "make: run as root to install: $$missing" >&2; exit 1; fi; \
		echo "installing: $$missing"; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; \
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing || exit 1; \
		for u in $(2); do systemctl disable --quiet $$u >/dev/null 2>&1 || true; done; \
	fi
endef

deps:
	$(call apt_quiet,$(APT_PACKAGES) $(APT_QUIET),$(QUIET_UNITS))

# The on-access peer `make bench` runs beside vigild (benchmarks/bench_clamav.py):
# Debian's clamd and clamonacc. Only the benchmarks need them. Their packaged
# services are kept from starting and disabled, freshclam included (it would
# download signatures): the benchmark builds its own database from the rules
# vigild runs, and starts and stops its own clamd and clamonacc by pid.
APT_BENCH := clamav clamav-daemon
BENCH_UNITS := clamav-daemon.service clamav-daemon.socket clamav-clamonacc.service \
	clamav-freshclam.service

bench-deps:
	$(call apt_quiet,$(APT_BENCH),$(BENCH_UNITS))

$(STAMP): pyproject.toml setup.py $(NATIVE) | deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	VIGILD_WERROR=1 $(PY) -m pip install -q -e '.[test,yarax,boreal]'
	touch $@

venv: deps $(STAMP)

lint: venv
	$(VENV)/bin/ruff check daemon tests benchmarks
	$(VENV)/bin/ruff format --check daemon tests benchmarks
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest -q tests/unit tests/native tests/rules

test: venv lint
	$(PY) -m pytest tests

bench: venv bench-deps
	PYTHONDONTWRITEBYTECODE=1 $(PY) -m pytest benchmarks -q -s -p no:cacheprovider --benchmark-disable-gc

# The daemon in the foreground, on the shipped default configuration
# (every key at its default: watches /home /srv /var/www /tmp /var/tmp /dev/shm,
# the onaccess.watch default in daemon/vigild/config.py). Needs root:
# fanotify permission events need CAP_SYS_ADMIN. Ctrl-C stops it; the
# kernel then lets every held open through.
run: venv
	$(VENV)/bin/vigild run --config packaging/vigild.toml

clean:
	rm -rf $(VENV) build dist *.egg-info daemon/vigild/*.so .pytest_cache .mypy_cache .ruff_cache

# ---- packages (issue 5) ------------------------------------------------
# Build from the checkout into dist/ and lint (lintian / rpmlint must be
# clean); as root, missing build tools are installed with apt. The .deb is
# for the host's Debian release (vigild_VERSION+debN); for another release,
# packaging/build-deb.sh --root DIR builds inside a tree of it. The logic is
# in the scripts; tests/system builds the .deb for Debian 12 and 13 and the
# .rpm again into a temporary dir.
.PHONY: deb rpm

deb:
	packaging/build-deb.sh

rpm:
	packaging/build-rpm.sh
