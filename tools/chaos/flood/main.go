// Command flood sends distinct users through a limiter opened by the
// composition root (package limiter) on the memory backend, the path the Go
// engine's pyext takes, and checks after every request that the store never
// holds more than memory_max_keys keys (docs/semantics.md §10). The Python
// side cannot see the Go store's size, so `make chaos` runs this next to
// tools/chaos/chaos.py flood.
//
// It also checks that memory stops growing once the store is full: the live
// Go heap (after a collection) at the end may exceed the live heap when the
// store first filled by at most maxLiveGrowth. The process's RSS cannot be
// held that tightly: between collections the heap also holds the garbage of
// evicted entries, up to GOGC percent (100 by default) of the live heap, so
// RSS after the store is full grows by about the live heap once, whatever the
// bound on keys. The figures are printed as heap_*_mib.
//
// It prints one JSON object with the figures and exits 1 if a check failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
)

// maxLiveGrowth is the most the live heap may grow, as a fraction of the
// live heap when the store filled, while the full store churns. Measured: 4 %
// after 3x the bound in keys, 9 % after 10x, 10 % after 20x (the concurrent
// map keeps some overflow buckets after deletions; the growth levels off).
const maxLiveGrowth = 0.20

func main() {
	identities := flag.Int("identities", 1_000_000, "distinct users to send")
	maxKeys := flag.Int("max-keys", 100_000, "memory_max_keys")
	flag.Parse()
	if err := run(*identities, *maxKeys); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

func run(identities, maxKeys int) error {
	cfgJSON := `{"by_user":{"limit":1000000,"window_s":3600},"memory_max_keys":` + strconv.Itoa(maxKeys) + `}`
	lim, err := limiter.NewRegistry().Open("flood", cfgJSON)
	if err != nil {
		return fmt.Errorf("limiter: %w", err)
	}
	defer lim.Close()
	ctx := context.Background()
	maxLen := 0
	var fill, end runtime.MemStats
	var inuseMax uint64
	start := time.Now()
	for i := 0; i < identities; i++ {
		if i == maxKeys {
			runtime.GC()
			runtime.ReadMemStats(&fill)
		}
		if i > maxKeys && i%10_000 == 0 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			inuseMax = max(inuseMax, m.HeapInuse)
		}
		d, err := lim.Evaluate(ctx, limiter.Request{User: "flood-" + strconv.Itoa(i) + ":%~{tag}@example.com"})
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if !d.Admitted {
			return fmt.Errorf("request %d: a first request was refused", i)
		}
		if n := lim.MemoryKeys(); n > maxLen {
			maxLen = n
		}
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&end)
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	out := map[string]any{
		"heap_live_at_fill_mib":         mib(fill.HeapAlloc),
		"heap_live_end_mib":             mib(end.HeapAlloc),
		"heap_inuse_max_after_fill_mib": mib(inuseMax),
		"heap_sys_end_mib":              mib(end.HeapSys),
		"heap_released_end_mib":         mib(end.HeapReleased),
		"num_gc":                        end.NumGC,
		"identities":                    identities,
		"memory_max_keys":               maxKeys,
		"keys_max":                      maxLen,
		"keys_end":                      lim.MemoryKeys(),
		"seconds":                       elapsed.Seconds(),
		"ns_per_request":                elapsed.Nanoseconds() / int64(identities),
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	if maxLen > maxKeys {
		return fmt.Errorf("the store held %d keys, more than memory_max_keys %d", maxLen, maxKeys)
	}
	if identities > maxKeys && float64(end.HeapAlloc) > float64(fill.HeapAlloc)*(1+maxLiveGrowth) {
		return fmt.Errorf("the live heap grew from %.1f to %.1f MiB after the store was full (more than %.0f %%)",
			mib(fill.HeapAlloc), mib(end.HeapAlloc), 100*maxLiveGrowth)
	}
	return nil
}
