"""rlbench: the hook-path A/B benchmark of the rate limiter engines and their peers.

Everything is measured in one process, on one event loop, in interleaved
rounds (see ``runner``). ``python -m rlbench --help`` lists the options; the
Makefile fragment ``bench/bench.mk`` has the targets ``bench``, ``bench-ab``
and ``bench-ab-quick``. ``report`` turns a results JSON into
docs/benchmarks.md and its chart.
"""
