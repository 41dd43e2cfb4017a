# The real-gateway rig: ContextForge (1.1.0 on CPython 3.12 by default) + this plugin, nginx,
# Redis, locust (rig/README in docs/gateway.md and docs/loadtest.md). Included from the top
# Makefile; every name is rig- or loadtest-prefixed. Everything runs on 127.0.0.1 with bounded
# durations and stops by itself, except rig-up (stop it with rig-down, which stops every rig still running).
#
# Knobs (environment or make variables), defaults in brackets:
#   GATEWAY_VERSION [1.1.0]  1.1.0 (CPython 3.12) or 1.0.7 (CPython 3.11); venv rig/.venv-gateway-<version>
#   RIG_PACKAGE_FROM [wheel]  wheel: `make wheels PYTHONS=<minor>` then pip install of that wheel; source
#   GW_ENGINES ["go python go"]  RATE_LIMITER_ENGINE per gateway
#   LT_ALGORITHMS ["fixed_window sliding_window token_bucket"]  for loadtest-correctness
#   LT_DURATION  seconds of load per test [70 correctness/scale, 30 capacity]
#   LT_CLIENTS   concurrent locust clients   LT_LIMIT  by_user rate [100/m correctness, 3/m scale]
#   LT_MEMORY_LIMIT  by_user rate of the memory-backend correctness run [50/m]: each of the N
#                    gateways' stores sees 1/N of the demand, which must still exceed the limit
#   LT_USERS     users [2 correctness, 100 scale, 8 capacity]   LT_REPEAT  capacity rounds [2]
#   LT_MAX_INFRA_PCT  allowed infrastructure errors in % [1.0]   RL_FAIL_MODE [closed]
#   LT_REDIS_TIMEOUT_MS  the plugin's redis_timeout_ms in the load tests [200]; 0: the plugin's default (50)
#   LT_NO_DOC=1  do not rewrite the result sections of docs/loadtest.md
#   LT_BACKENDS ["memory redis"], LT_ROUNDS [5], LT_REQUESTS [200 per batch], LT_RATE [8/s]  for loadtest-cost
#   REDIS_MODE [standalone]  cluster: rig-up and loadtest-correctness run on a local Redis Cluster (3 primaries +
#                3 replicas on loopback, tests_py/support/redis_cluster.py), the plugin with redis_mode cluster and
#                a seed node as redis_url; loadtest-correctness then runs the Redis algorithms only (no memory run)
#
# `make docs` re-renders every section of docs/loadtest.md from docs/loadtest-results/ (loadtest-render) and
# docs/gateway.md's discover sections from docs/gateway-results/ (rig/discover.py render): nothing is run.

RIG_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
RIG_PY ?= python3
GATEWAY_VERSION ?= 1.1.0
export GATEWAY_VERSION
RIG_VPY := $(RIG_DIR)/.venv-rig/bin/python
LT_ALGORITHMS ?= fixed_window sliding_window token_bucket
LT_REPEAT ?= 2
LT_MEMORY_LIMIT ?= 50/m
LT_DOC_FLAG = $(if $(LT_NO_DOC),--no-doc,)
REDIS_MODE ?= standalone
export REDIS_MODE

.PHONY: rig-deps rig-test rig-up rig-down rig-status demo-gateway loadtest-correctness loadtest-capacity-ab loadtest-scale loadtest-cost loadtest-render

rig-deps:
	RIG_PYTHON=$(RIG_PY) $(RIG_DIR)/install.sh

# the rig's own unit tests (response classifier, verdict arithmetic) and lint
rig-test: rig-deps
	$(RIG_VPY) -m pytest -q -c $(RIG_DIR)/pytest.ini $(RIG_DIR)/tests
	$(RIG_DIR)/.venv-rig/bin/ruff check $(RIG_DIR)

# the rig's venv python: a Cluster (REDIS_MODE=cluster) is started by the project's launcher, which needs redis-py
rig-up: rig-deps
	RIG_PYTHON=$(RIG_VPY) $(RIG_DIR)/up.sh

rig-down:
	$(RIG_DIR)/down.sh

rig-status:
	$(RIG_PY) $(RIG_DIR)/rigctl.py status

demo-gateway: rig-deps
	$(RIG_VPY) $(RIG_DIR)/demo_gateway.py

# Redis backend (REDIS_MODE: one redis-server or a local Cluster), each algorithm: 3 gateways together admit
# exactly the limit per window; then (standalone only) the memory backend, which admits up to N times the
# limit (one store per gateway process).
loadtest-correctness: rig-deps
	@status=0; \
	for algo in $(LT_ALGORITHMS); do \
	  $(RIG_VPY) $(RIG_DIR)/loadtest/run.py correctness --backend redis --redis-mode $(REDIS_MODE) --algorithm $$algo $(LT_DOC_FLAG) || status=1; \
	done; \
	if [ "$(REDIS_MODE)" = standalone ]; then \
	  $(RIG_VPY) $(RIG_DIR)/loadtest/run.py correctness --backend memory --algorithm fixed_window --limit $(LT_MEMORY_LIMIT) $(LT_DOC_FLAG) || status=1; \
	fi; \
	exit $$status

loadtest-capacity-ab: rig-deps
	LT_REPEAT=$(LT_REPEAT) $(RIG_VPY) $(RIG_DIR)/loadtest/run.py capacity-ab $(LT_DOC_FLAG)

loadtest-scale: rig-deps
	$(RIG_VPY) $(RIG_DIR)/loadtest/run.py scale $(LT_DOC_FLAG)

# the plugin's share of a gateway request: gateway CPU per tools/call with the plugin off, on (go), on (python),
# one rig and one section per backend (LT_BACKENDS ["memory redis"]; LT_ROUNDS, LT_REQUESTS, LT_RATE)
loadtest-cost: rig-deps
	$(RIG_VPY) $(RIG_DIR)/loadtest/cost.py $(LT_DOC_FLAG)

# every generated section of docs/loadtest.md from its raw results in docs/loadtest-results/; runs nothing
loadtest-render:
	$(RIG_PY) $(RIG_DIR)/loadtest/run.py render
