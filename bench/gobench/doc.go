// Package gobench holds Go micro-benchmarks of the Go engine on the memory
// backend: one Evaluate of a limiter opened by the composition root
// (package limiter), as the binding opens it, without Python, gopy or Redis, for
// the three algorithms, one and three dimensions, admitted and blocked. They
// show the Go engine's own share of a hook call (docs/benchmarks.md) and run
// with `make bench` (go test -bench, formatted by benchstat).
package gobench
