# rate_limiter_go: build, lint and test.  `make test` is what CI runs
# (.ci/run).  Every target prints what it does and can be re-run.
#
# Dev loop: the venv has the package installed EDITABLE (pip install -e .,
# with RATE_LIMITER_GO_NATIVE=skip so pip does not build Go), so Python
# edits are live, and `make build` regenerates the Go extension in place in
# python/rate_limiter_go/_goext, where the editable install finds it.
# `make wheel-check` exercises the real, non-editable `pip install .` path
# (setup.py runs the same tools/build_native.py) into a throwaway venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export PATH := /usr/local/go/bin:$(PATH)
export GOFLAGS ?= -buildvcs=false

# CPython 3.11 from pyenv (shared libpython); override with PYTHON311=...
PYTHON311 ?= $(shell p=$$(pyenv prefix 3.11 2>/dev/null | head -n1); \
	if [ -n "$$p" ] && [ -x "$$p/bin/python3.11" ]; then echo "$$p/bin/python3.11"; else command -v python3.11; fi)
VENV ?= .venv
VPY := $(VENV)/bin/python
ENGINES ?= python go
PYTEST_ARGS ?= -q
RUFF_PATHS := $(wildcard python tests_py tools examples setup.py)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps-system venv build lint test-go test-py test-rig test demo demo-framework wheel-check clean distclean

help:
	@echo "targets: deps-system venv build lint test-go test-py test-rig test demo demo-framework wheel-check clean distclean"
	@echo "  bench bench-ab bench-ab-quick | chaos | rig-up rig-down demo-gateway loadtest-correctness loadtest-capacity-ab loadtest-scale"
	@echo "  ENGINES='$(ENGINES)'  PYTHON311=$(PYTHON311)  VENV=$(VENV)"

# System packages.  redis-server is installed but NOT started: the tests run
# their own private redis-server on free ports.  A temporary policy-rc.d
# (exit 101) keeps the package's maintainer scripts from starting a daemon.
deps-system:
	@if command -v redis-server >/dev/null 2>&1; then \
		echo "deps-system: redis-server present: $$(command -v redis-server) ($$(redis-server --version | cut -d' ' -f3))"; \
	else \
		echo "deps-system: installing redis-server (apt), without starting the service"; \
		created=0; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
			$(SUDO) chmod 755 /usr/sbin/policy-rc.d; created=1; \
		fi; \
		rc=0; \
		export DEBIAN_FRONTEND=noninteractive; \
		if ! $(SUDO) apt-get install -y --no-install-recommends redis-server; then \
			echo "deps-system: install failed with the current package lists; running apt-get update"; \
			$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends redis-server || rc=$$?; \
		fi; \
		if [ $$created = 1 ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$rc; \
	fi

$(VENV)/.installed: requirements-dev.txt pyproject.toml setup.py
	@echo "venv: $(VENV) from $(PYTHON311)"
	@test -n "$(PYTHON311)" || { echo "venv: no CPython 3.11 found (pyenv prefix 3.11 / python3.11)"; exit 1; }
	@test -x $(VPY) || { echo "+ $(PYTHON311) -m venv $(VENV)"; $(PYTHON311) -m venv $(VENV); }
	$(VPY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	RATE_LIMITER_GO_NATIVE=skip $(VPY) -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e .
	$(VPY) -m pip check --disable-pip-version-check
	@touch $@

venv: $(VENV)/.installed

# Go engine -> python/rate_limiter_go/_goext (one c-shared .so + gopy .py
# wrappers), Lua scripts -> python/rate_limiter_go/lua.  Always re-run (the Go
# build cache keeps it to seconds); the same script runs under pip install.
build: venv
	@echo "build: gopy ./pyext for $(VPY) -> python/rate_limiter_go/_goext; lua -> python/rate_limiter_go/lua"
	$(VPY) tools/build_native.py --python $(abspath $(VPY))

lint: venv
	@echo "lint: ruff, gofmt, go vet, staticcheck"
	$(VPY) -m ruff check $(RUFF_PATHS)
	@dirs=$$(go list -f '{{.Dir}}' ./...); out=$$(gofmt -l $$dirs); \
		if [ -n "$$out" ]; then echo "gofmt: these files need gofmt -w:"; echo "$$out"; exit 1; fi; \
		echo "gofmt -l: clean"
	go vet ./...
	go tool staticcheck ./...

test-go:
	@echo "test-go: go test -race ./..."
	go test -race ./...

# Each engine in ENGINES runs the whole Python suite.  pytest exit code 5
# (no tests collected) is a failure, reported explicitly.
test-py: $(if $(filter go,$(ENGINES)),build,venv)
	@for e in $(ENGINES); do \
		echo "test-py: RATE_LIMITER_ENGINE=$$e $(VPY) -m pytest tests_py $(PYTEST_ARGS)"; \
		rc=0; RATE_LIMITER_ENGINE=$$e $(VPY) -m pytest tests_py $(PYTEST_ARGS) || rc=$$?; \
		if [ $$rc = 5 ]; then echo "test-py: FAILED: pytest collected no tests (exit 5) with RATE_LIMITER_ENGINE=$$e"; fi; \
		if [ $$rc != 0 ]; then echo "test-py: FAILED (exit $$rc) with RATE_LIMITER_ENGINE=$$e"; exit $$rc; fi; \
	done

# The rig's own unit tests (response classifier, verdict arithmetic): pytest only.
test-rig: venv
	@echo "test-rig: $(VPY) -m pytest -c rig/pytest.ini rig/tests"
	$(VPY) -m pytest -q -c rig/pytest.ini rig/tests

test: deps-system venv build lint test-go test-py test-rig
	@echo "test: all passed"

# The main job: the real ContextForge gateway (pip-installed with this
# package) on the memory backend, called over HTTP until it limits; see
# rig/rig.mk.  demo-framework is the same burst through cpex alone.
demo: demo-gateway

demo-framework: build
	$(VPY) examples/demo.py

# Non-editable install from this tree into a throwaway venv (setup.py builds
# the Go engine); checks the wheel ships the .so, the wrappers and the Lua.
wheel-check: venv
	@echo "wheel-check: pip install . into .build/wheel-venv"
	rm -rf .build/wheel-venv
	$(PYTHON311) -m venv .build/wheel-venv
	RATE_LIMITER_GO_NATIVE=require .build/wheel-venv/bin/pip install --disable-pip-version-check -q .
	cd /tmp && $(abspath .build/wheel-venv/bin/python) -c 'import importlib.resources as r, rate_limiter_go._native as n; \
		assert n.native_available(), n.native_unavailable_reason(); m = n.load_native(); assert m.ABIVersion() >= 1; \
		lua = sorted(p.name for p in r.files("rate_limiter_go").joinpath("lua").iterdir()); assert lua, lua; \
		print("wheel-check: ok, ABIVersion", m.ABIVersion(), "lua", lua)'

clean:
	@echo "clean: build outputs (keeps $(VENV))"
	rm -rf .build build dist python/rate_limiter_go/_goext python/rate_limiter_go/_goext.tmp python/rate_limiter_go/lua python/*.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache

# Benchmarks (issue "Performance"), the real-gateway rig (issue "The real
# gateway") and the long hardening runs (make chaos): their targets live
# beside their code.
include bench/bench.mk
include rig/rig.mk
include tools/chaos.mk
