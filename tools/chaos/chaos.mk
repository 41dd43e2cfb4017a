# `make chaos`: the long hardening runs (issue "Hardening: faults, floods and
# hostile input, shown with figures").  Included from the top Makefile with
#   include tools/chaos/chaos.mk
# Runs in under 10 minutes on 2 cores; prints every figure and regenerates
# the tables of docs/reliability.md from the JSON it writes into docs/reliability-results/
# (committed with the doc; `make chaos-report` re-renders without measuring).
# CHAOS_IDENTITIES and CHAOS_FUZZTIME shorten a run for a quick look: give such a run
# CHAOS_DIR=.build/chaos, so it does not replace the committed results.

CHAOS_DIR ?= docs/reliability-results
CHAOS_IDENTITIES ?= 1000000
CHAOS_MAX_KEYS ?= 100000
CHAOS_FUZZTIME ?= 20s

.PHONY: chaos chaos-faults chaos-flood chaos-fuzz chaos-failover chaos-report

# Every step runs even if an earlier one missed a goal, so the report always
# has all the figures; the target fails at the end if any step failed.
chaos: deps-system build
	@echo "chaos: Redis faults, key flood, Go fuzzing, then docs/reliability.md"; mkdir -p $(CHAOS_DIR)
	@rc=0; \
	$(CHAOS_FAULTS) || rc=1; \
	$(CHAOS_FLOOD) || rc=1; \
	$(CHAOS_FUZZ) || rc=1; \
	$(CHAOS_FAILOVER) || rc=1; \
	$(CHAOS_REPORT); \
	if [ $$rc != 0 ]; then echo "chaos: FAILED (a goal was missed or a run failed; see above)"; exit 1; fi; \
	echo "chaos: all goals met"

CHAOS_FAULTS = echo "chaos-faults: kill / SIGSTOP / slowed Redis under 32 concurrent hook calls, engines python and go"; \
	$(VPY) tools/chaos/chaos.py faults --out $(CHAOS_DIR)/faults.json
chaos-faults:
	@$(CHAOS_FAULTS)

CHAOS_FLOOD = ( echo "chaos-flood: $(CHAOS_IDENTITIES) identities, memory backend, memory_max_keys=$(CHAOS_MAX_KEYS)"; \
	frc=0; for e in python go; do \
		$(VPY) tools/chaos/chaos.py flood --engine $$e --identities $(CHAOS_IDENTITIES) --max-keys $(CHAOS_MAX_KEYS) \
			--out $(CHAOS_DIR)/flood-$$e.json || frc=1; \
	done; \
	go run ./tools/chaos/flood -identities $(CHAOS_IDENTITIES) -max-keys $(CHAOS_MAX_KEYS) \
		> $(CHAOS_DIR)/flood-go-store.json || frc=1; \
	echo "chaos-flood: Go store: $$(cat $(CHAOS_DIR)/flood-go-store.json)"; \
	exit $$frc )
chaos-flood:
	@$(CHAOS_FLOOD)

CHAOS_FUZZ = echo "chaos-fuzz: go test -fuzz, $(CHAOS_FUZZTIME) per target"; \
	$(VPY) tools/chaos/chaos.py fuzz --fuzztime $(CHAOS_FUZZTIME) --out $(CHAOS_DIR)/fuzz.json
chaos-fuzz:
	@$(CHAOS_FUZZ)

# Redis Cluster and Sentinel failovers under load (docs/semantics.md §11): raw results one JSON
# line per run. tools/chaos/failover_hook.py drives the plugin hook, once per engine;
# tests_go/redis_failover_chaos_test.go drives the Go library (limiter.Evaluate).
CHAOS_FAILOVER = ( echo "chaos-failover: Cluster (kill -9, CLUSTER FAILOVER, DEBUG SLEEP, slot migration: hook only) and Sentinel (kill -9, SENTINEL FAILOVER) under load: plugin hook (engines python, go), Go library"; \
	rm -f $(CHAOS_DIR)/failover.jsonl; \
	export RL_CHAOS=1 RL_CHAOS_OUT=$(abspath $(CHAOS_DIR))/failover.jsonl \
		RL_CHAOS_COMMIT=$$(git rev-parse --short HEAD)$$(git diff --quiet HEAD -- . ':!$(CHAOS_DIR)' ':!docs/reliability.md' || echo +dirty); \
	frc=0; for e in python go; do \
		$(VPY) tools/chaos/failover_hook.py --engine $$e --out $$RL_CHAOS_OUT || frc=1; \
	done; \
	go test -count=1 -v \
		-run 'TestCluster(PrimaryKilled|ManualFailover|PrimaryStalls)UnderLoad|TestSentinel(PrimaryKilled|Failover)UnderLoad' ./tests_go/ || frc=1; \
	exit $$frc )
chaos-failover:
	@mkdir -p $(CHAOS_DIR); $(CHAOS_FAILOVER)

CHAOS_REPORT = $(VPY) tools/chaos/chaos_report.py --dir $(CHAOS_DIR)
chaos-report:
	@$(CHAOS_REPORT)
