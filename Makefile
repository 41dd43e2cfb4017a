# rate_limiter_go: build, lint and test.  `make test` is what CI runs
# (.ci/run).  Every target prints what it does and can be re-run.
#
# What `make test` tests is what users install: `make wheels` builds the
# sdist and, from it, a manylinux wheel per CPython in PYTHONS; the Python
# suite runs on each wheel (test-py), and each wheel is installed without any
# toolchain (test-wheels).
#
# Dev loop: .venv (CPython 3.11) has the package installed EDITABLE (pip
# install -e ., RATE_LIMITER_GO_NATIVE=skip so pip does not build Go), so
# Python edits are live, and `make build` regenerates the Go extension in
# place in python/rate_limiter_go/_goext; `make test-py-dev` runs the suite
# there.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export PATH := /usr/local/go/bin:$(PATH)
export GOFLAGS ?= -buildvcs=false

# The CPython versions we ship a wheel for and test (requires-python in
# pyproject.toml says the same).  python_for,X.Y is the interpreter used for
# X.Y: $(PYTHON3YY) if set (e.g. PYTHON312=/opt/py/bin/python3.12), else
# pyenv's, else pythonX.Y on PATH.  The dev venv uses 3.11.
PYTHONS_RELEASE := 3.11 3.12 3.13
PYTHONS ?= $(PYTHONS_RELEASE)
# where `make wheels` writes the sdist and the wheels, and test-py reads them
DIST ?= dist
python_for = $(or $(PYTHON$(subst .,,$(1))),$(shell p=$$(pyenv prefix $(1) 2>/dev/null | head -n1); \
	if [ -n "$$p" ] && [ -x "$$p/bin/python$(1)" ]; then echo "$$p/bin/python$(1)"; else command -v python$(1); fi))
PYTHON311 := $(call python_for,3.11)
VENV ?= .venv
VPY := $(VENV)/bin/python
ENGINES ?= python go
PYTEST_ARGS ?= -q
# tests_py/wheels tests the built wheels (make test-wheels), once, not per engine
PYTEST_SUITE := tests_py --ignore=tests_py/wheels
RUFF_PATHS := $(wildcard python tests_py tools examples setup.py rig bench)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps-system venv build pgo-profile wheels lint test-go test-py test-py-dev test-wheels test-rig test test-timed demo demo-framework clean distclean

help:
	@echo "targets: deps-system venv build pgo-profile wheels lint test-go test-py test-py-X.Y test-py-dev test-wheels test-rig test demo demo-framework clean distclean"
	@echo "  docs (re-render generated docs) | bench bench-ab bench-ab-quick bench-engine | chaos chaos-report | rig-up rig-down demo-gateway loadtest-correctness loadtest-capacity-ab loadtest-scale loadtest-cost loadtest-render"
	@echo "  PYTHONS='$(PYTHONS)'  ENGINES='$(ENGINES)'  DIST=$(DIST)  SKIP_WHEELS=$(SKIP_WHEELS)  VENV=$(VENV)"

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

$(VENV)/.installed: requirements-dev.txt constraints.txt pyproject.toml setup.py
	@echo "venv: $(VENV) from $(PYTHON311)"
	@test -n "$(PYTHON311)" || { echo "venv: no CPython 3.11 found (pyenv prefix 3.11 / python3.11)"; exit 1; }
	@test -x $(VPY) || { echo "+ $(PYTHON311) -m venv $(VENV)"; $(PYTHON311) -m venv $(VENV); }
	$(VPY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt -c constraints.txt
	RATE_LIMITER_GO_NATIVE=skip $(VPY) -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e .
	$(VPY) -m pip check --disable-pip-version-check
	@touch $@

venv: $(VENV)/.installed

# Go engine -> python/rate_limiter_go/_goext (one c-shared .so + gopy .py
# wrappers), Lua scripts -> python/rate_limiter_go/lua.  Always re-run (the Go
# build cache keeps it to seconds); the same script runs under pip install.
build: venv
	@echo "build: gopy ./pyext for $(VPY) -> python/rate_limiter_go/_goext; lua -> python/rate_limiter_go/lua"
	$(VPY) tools/build/build_native.py --python $(abspath $(VPY))

# The PGO profile the engine is compiled with (docs/engine.md, "Profile-guided
# optimisation"): rewrite pyext/default.pgo from the core benchmarks after a
# change to the hot path, and commit it.  About a minute.
pgo-profile:
	$(PYTHON311) tools/build/build_native.py --write-pgo-profile

# Security scan (docs/build.md, "Security checks"): gosec over the Go packages
# (not _test.go files, not cgo's generated code) and bandit over the Python
# code that ships or builds (not tests_py, not gopy's _goext); every
# suppression names its rule and says why.
lint: venv
	@echo "lint: ruff, pins, gofmt, go vet, staticcheck, gosec, bandit"
	$(VPY) -m ruff check $(RUFF_PATHS)
	$(VPY) tools/build/check_pins.py
	@dirs=$$(go list -f '{{.Dir}}' ./...); out=$$(gofmt -l $$dirs); \
		if [ -n "$$out" ]; then echo "gofmt: these files need gofmt -w:"; echo "$$out"; exit 1; fi; \
		echo "gofmt -l: clean"
	go vet ./...
	go tool staticcheck ./...
	go tool gosec -quiet -exclude-generated -nosec-require-rules -nosec-require-justification ./...
	@# bandit applies a nosec to its whole (multi-line) statement and warns
	@# "nosec encountered (B...), but no failed test" for each other node of it:
	@# those lines are dropped, everything else is shown, bandit's exit code kept.
	@echo "bandit -r python tools examples setup.py -x python/rate_limiter_go/_goext"
	@out=$$($(VPY) -m bandit -q -r python tools examples setup.py -x python/rate_limiter_go/_goext 2>&1); rc=$$?; \
		printf '%s\n' "$$out" | grep -v -e '^$$' -e 'nosec encountered (B[0-9]*), but no failed test' || true; \
		[ $$rc = 0 ] && echo "bandit: clean"; exit $$rc

# TestEvaluateAllocs skips under -race (the race detector makes sync.Pool drop
# items at random), so the allocation tests run again without it.
test-go:
	@echo "test-go: go test -race ./..., then the allocation tests without -race"
	go test -race ./...
	go test -run 'Alloc' -count=1 ./...

# dist/: the sdist and one auditwheel-repaired manylinux wheel per version in
# PYTHONS, each built from the sdist (tools/build/build_wheels.py).  With every
# released version it also regenerates the wheels table of docs/build.md.
wheels: venv
	@echo "wheels: sdist + wheels for CPython $(PYTHONS) -> $(DIST)/"
	PATH="$(abspath $(VENV)/bin):$$PATH" $(VPY) tools/build/build_wheels.py --dist $(DIST) \
		$(foreach v,$(PYTHONS),--interpreter $(v)=$(call python_for,$(v))) \
		$(if $(filter $(PYTHONS_RELEASE),$(PYTHONS)),$(if $(filter-out $(PYTHONS),$(PYTHONS_RELEASE)),,--doc),)

# The Python suite, once per version in PYTHONS and engine in ENGINES, against
# that version's wheel from dist/ installed (not editable) into
# .build/test-venv-X.Y with the pins of requirements-dev.txt.  conftest.py
# fails the run when RATE_LIMITER_ENGINE=go cannot load the Go engine.
# SKIP_WHEELS=1 tests the wheels already in dist/ (dev loop; CI builds them).
# pytest exit code 5 (no tests collected) is a failure, reported explicitly.
test-py: $(addprefix test-py-,$(PYTHONS))

test-py-%: $(if $(SKIP_WHEELS),,wheels)
	@v=$*; tag=cp$(subst .,,$*); venv=.build/test-venv-$$v; \
	whl=$$(ls $(DIST)/rate_limiter_go-*-$$tag-$$tag-*manylinux*.whl); \
	if [ ! -f $$venv/.deps ] || [ requirements-dev.txt -nt $$venv/.deps ] || [ constraints.txt -nt $$venv/.deps ]; then \
		echo "test-py-$$v: $$venv from $(call python_for,$*) with requirements-dev.txt"; \
		rm -rf $$venv; $(call python_for,$*) -m venv $$venv; \
		$$venv/bin/pip install --disable-pip-version-check -q -r requirements-dev.txt -c constraints.txt; touch $$venv/.deps; \
	fi; \
	echo "test-py-$$v: pip install $$whl"; \
	$$venv/bin/pip install --disable-pip-version-check -q --force-reinstall --no-deps $$whl; \
	$$venv/bin/pip check --disable-pip-version-check; \
	for e in $(ENGINES); do \
		echo "test-py-$$v: RATE_LIMITER_ENGINE=$$e $$venv/bin/python -m pytest $(PYTEST_SUITE) $(PYTEST_ARGS)"; \
		rc=0; RATE_LIMITER_ENGINE=$$e $$venv/bin/python -m pytest $(PYTEST_SUITE) $(PYTEST_ARGS) || rc=$$?; \
		if [ $$rc = 5 ]; then echo "test-py-$$v: FAILED: pytest collected no tests (exit 5) with RATE_LIMITER_ENGINE=$$e"; fi; \
		if [ $$rc != 0 ]; then echo "test-py-$$v: FAILED (exit $$rc) with RATE_LIMITER_ENGINE=$$e"; exit $$rc; fi; \
	done

# The dev loop: the suite on the editable .venv (CPython 3.11) with the
# extension `make build` puts into python/rate_limiter_go/_goext.
test-py-dev: $(if $(filter go,$(ENGINES)),build,venv)
	@for e in $(ENGINES); do \
		echo "test-py-dev: RATE_LIMITER_ENGINE=$$e $(VPY) -m pytest $(PYTEST_SUITE) $(PYTEST_ARGS)"; \
		RATE_LIMITER_ENGINE=$$e $(VPY) -m pytest $(PYTEST_SUITE) $(PYTEST_ARGS); \
	done

# Each wheel in dist/ into a fresh venv whose PATH has no Go, gcc or
# pybindgen; RATE_LIMITER_ENGINE=go must load the Go engine and limit
# (tests_py/wheels/test_wheel_install.py).
test-wheels: $(if $(SKIP_WHEELS),,wheels)
	@echo "test-wheels: pip install of each wheel in $(DIST)/ without a toolchain"
	env -u RATE_LIMITER_ENGINE WHEEL_DIST=$(abspath $(DIST)) \
		WHEEL_PYTHONS="$(foreach v,$(PYTHONS),$(v)=$(call python_for,$(v)))" \
		$(VPY) -m pytest tests_py/wheels $(PYTEST_ARGS)

# The rig's own unit tests (response classifier, verdict arithmetic): pytest only.
test-rig: venv
	@echo "test-rig: $(VPY) -m pytest -c rig/pytest.ini rig/tests"
	$(VPY) -m pytest -q -c rig/pytest.ini rig/tests

test: deps-system venv lint test-go test-py test-wheels test-rig
	@echo "test: all passed"

# `make test` step by step with the time of each, written into docs/build.md
# and README.md (tools/build/time_make_test.py); CACHES=cold after a fresh clone.
test-timed: venv
	$(VPY) tools/build/time_make_test.py --caches "$(or $(CACHES),warm)"

print-%:
	@echo $($*)

# The main job: the real ContextForge gateway (pip-installed with this
# package) on the memory backend, called over HTTP until it limits; see
# rig/rig.mk.  demo-framework is the same burst through cpex alone.
demo: demo-gateway

demo-framework: build
	$(VPY) examples/demo.py

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
include tools/chaos/chaos.mk

# Re-render every generated doc section from the raw results committed beside it; measures nothing
# (docs/build.md, "Generated docs"). Each renderer takes the commit, clean-tree flag and load of a
# section from its raw results, never from the tree that renders.
.PHONY: docs
docs: venv bench-venv
	$(VPY) tools/build/build_wheels.py --render
	$(VPY) tools/build/time_make_test.py --render
	$(VPY) tools/chaos/chaos_report.py
	$(BENCH_ENV) $(VPY) -m rlbench.engine --render
	$(BENCH_ENV) $(BENCH_PY) -m rlbench.report bench/results/results.json --doc docs/benchmarks.md --chart docs/benchmarks.png
	python3 rig/features.py render
	python3 rig/discover.py render
	python3 rig/loadtest/run.py render
