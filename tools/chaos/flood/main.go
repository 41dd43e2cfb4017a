// Command flood sends distinct users through a limiter opened by the
// composition root (package limiter) on the memory backend, the path the Go
// engine's pyext takes, and checks after every request that the store never
// holds more than memory_max_keys keys (docs/semantics.md §10). The Python
// side cannot see the Go store's size, so `make chaos` runs this next to
// tools/chaos/chaos.py flood. It prints one JSON object with the figures and
// exits 1 if the bound was ever exceeded.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
)

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
	start := time.Now()
	for i := 0; i < identities; i++ {
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
	out := map[string]any{
		"identities":      identities,
		"memory_max_keys": maxKeys,
		"keys_max":        maxLen,
		"keys_end":        lim.MemoryKeys(),
		"seconds":         elapsed.Seconds(),
		"ns_per_request":  elapsed.Nanoseconds() / int64(identities),
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	if maxLen > maxKeys {
		return fmt.Errorf("the store held %d keys, more than memory_max_keys %d", maxLen, maxKeys)
	}
	return nil
}
