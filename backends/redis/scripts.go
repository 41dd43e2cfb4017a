package redis

import (
	"crypto/sha1" // #nosec G505 -- EVALSHA names a script by its SHA-1 (Redis protocol), not a security use
	"embed"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// The Lua files are the single source of the Redis logic for both engines
// (docs/semantics.md §9); they are compiled into the binary so a deployed
// extension can never disagree with the scripts it was tested against.
//
//go:embed lua/*.lua
var luaFiles embed.FS

// script is one embedded Lua script and its SHA-1 digest, the EVALSHA handle.
type script struct {
	src string
	sha string
}

// scriptFiles maps each algorithm to its file under lua/.
var scriptFiles = [...]struct {
	kind algorithms.Kind
	file string
}{
	{algorithms.FixedWindow, "lua/fixed_window.lua"},
	{algorithms.SlidingWindow, "lua/sliding_window.lua"},
	{algorithms.TokenBucket, "lua/token_bucket.lua"},
}

// loadScript reads the embedded script of kind and computes its digest.
func loadScript(kind algorithms.Kind) (script, error) {
	return loadFile(kind, ".lua")
}

// loadGiveBack reads the embedded Cluster give-back script of kind (§11.1).
func loadGiveBack(kind algorithms.Kind) (script, error) {
	return loadFile(kind, "_give_back.lua")
}

// loadFile reads the script of kind whose file name ends with suffix instead
// of ".lua", and computes its digest.
func loadFile(kind algorithms.Kind, suffix string) (script, error) {
	for _, f := range scriptFiles {
		if f.kind != kind {
			continue
		}
		name := strings.TrimSuffix(f.file, ".lua") + suffix
		b, err := luaFiles.ReadFile(name)
		if err != nil {
			return script{}, fmt.Errorf("read embedded script %s: %w", name, err)
		}
		sum := sha1.Sum(b) // #nosec G401 -- EVALSHA names a script by its SHA-1 (Redis protocol), not a security use
		return script{src: string(b), sha: hex.EncodeToString(sum[:])}, nil
	}
	return script{}, fmt.Errorf("no script for algorithm %v", kind)
}

// ScriptSHA returns the SHA-1 digest (lower-case hex) under which the script
// of kind is called with EVALSHA, or "" for an unknown kind. Tests and
// operators use it to recognise the scripts in SCRIPT EXISTS or slow logs.
func ScriptSHA(kind algorithms.Kind) string {
	s, err := loadScript(kind)
	if err != nil {
		return ""
	}
	return s.sha
}
