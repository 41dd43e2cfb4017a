# Benchmarks.  Included from the top Makefile (`include bench/bench.mk`), so
# paths are relative to the repository root and PYTHON311, `build` and the
# shell settings come from there.
#
#   make bench           Go micro-benchmarks (-count $(BENCH_COUNT)) through benchstat,
#                        then the Python hook path of our two engines (floor, go, python)
#   make bench-ab        the full A/B run with the peers, on memory, one redis-server and a local
#                        Redis Cluster: writes docs/benchmarks.md, docs/benchmarks.png and
#                        bench/results/results.json (< 10 min; the Cluster cells about 2 of them).
#                        Issue 13 target 1 is judged from the Go benchmarks in bench/results/engine.json:
#                        run `make bench-engine` first on the same code
#   make bench-ab-quick  the same at smoke-run sizes (about 1-2 min), into bench/out/quick
#   make bench-engine    the Go engine's own costs (go test -bench ./core, binding, Redis path, RSS):
#                        bench/results/engine.json and docs/engine.md's measurements (a few minutes)
#   make bench-test      the harness's own tests (bench/tests)
#   make bench-venv      bench/.venv from bench/requirements.txt (peers and matplotlib live only there)

BENCH_VENV ?= bench/.venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_COUNT ?= 6
BENCH_OUT ?= bench/out
# Our package from the work tree (the Go extension built in place by `make build`) and the harness.
BENCH_ENV = PYTHONPATH=$(CURDIR)/python:$(CURDIR)/bench

.PHONY: bench bench-venv bench-go bench-hook bench-ab bench-ab-quick bench-engine bench-test

$(BENCH_VENV)/.installed: bench/requirements.txt constraints.txt
	@echo "bench-venv: $(BENCH_VENV) from $(PYTHON311)"
	@test -n "$(PYTHON311)" || { echo "bench-venv: no CPython 3.11 found (pyenv prefix 3.11 / python3.11)"; exit 1; }
	@test -x $(BENCH_PY) || { echo "+ $(PYTHON311) -m venv $(BENCH_VENV)"; $(PYTHON311) -m venv $(BENCH_VENV); }
	$(BENCH_PY) -m pip install --disable-pip-version-check -q -r bench/requirements.txt -c constraints.txt
	$(BENCH_PY) -m pip check --disable-pip-version-check
	@touch $@

bench-venv: $(BENCH_VENV)/.installed

# Every package's Go benchmarks (tests_go's need redis-server, started by the
# benchmark itself), then benchstat's summary of the $(BENCH_COUNT) runs.
bench-go:
	@mkdir -p $(BENCH_OUT)
	@echo "bench-go: go test -run '^\$$' -bench . -benchmem -count $(BENCH_COUNT) ./... > $(BENCH_OUT)/go-bench.txt"
	go test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./... | tee $(BENCH_OUT)/go-bench.txt
	go tool benchstat $(BENCH_OUT)/go-bench.txt

# Our hook path only: latency section, floor + both engines, quick sizes.
bench-hook: deps-system build bench-venv
	$(BENCH_ENV) $(BENCH_PY) -m rlbench --quick --subjects floor,go,python --sections latency,profile \
		--out $(BENCH_OUT)/hook --command 'make bench-hook'

bench: bench-go bench-hook

bench-ab: deps-system build bench-venv
	@echo "bench-ab: load average before the run: $$(cut -d' ' -f1-3 /proc/loadavg)"
	$(BENCH_ENV) $(BENCH_PY) -m rlbench --out bench/results --doc docs/benchmarks.md --chart docs/benchmarks.png \
		--command 'make bench-ab'

bench-ab-quick: deps-system build bench-venv
	$(BENCH_ENV) $(BENCH_PY) -m rlbench --quick --out $(BENCH_OUT)/quick --doc $(BENCH_OUT)/quick/benchmarks.md \
		--command 'make bench-ab-quick'

# The project's .venv (our engines; no peers needed), the harness package from bench/.
bench-engine: deps-system build
	@echo "bench-engine: load average before the run: $$(cut -d' ' -f1-3 /proc/loadavg)"
	$(BENCH_ENV) $(VPY) -m rlbench.engine

bench-test: bench-venv
	$(BENCH_ENV) $(BENCH_PY) -m pytest bench/tests -q
