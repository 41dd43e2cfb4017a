package redis

import (
	"crypto/sha1" // #nosec G505 -- EVALSHA names a script by its SHA-1 (Redis protocol), not a security use
	"embed"
	"encoding/hex"
	"fmt"

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

// numKinds is the number of algorithms; scripts are indexed by Kind.
const numKinds = 3

// loadScripts reads the embedded scripts and computes their digests.
func loadScripts() ([numKinds]script, error) {
	var out [numKinds]script
	for _, f := range scriptFiles {
		b, err := luaFiles.ReadFile(f.file)
		if err != nil {
			return out, fmt.Errorf("read embedded script %s: %w", f.file, err)
		}
		sum := sha1.Sum(b) // #nosec G401 -- EVALSHA names a script by its SHA-1 (Redis protocol), not a security use
		out[f.kind] = script{src: string(b), sha: hex.EncodeToString(sum[:])}
	}
	return out, nil
}

// ScriptSHA returns the SHA-1 digest (lower-case hex) under which the script
// of kind is called with EVALSHA, or "" for an unknown kind. Tests and
// operators use it to recognise the scripts in SCRIPT EXISTS or slow logs.
func ScriptSHA(kind algorithms.Kind) string {
	s, err := loadScripts()
	if err != nil || int(kind) >= numKinds {
		return ""
	}
	return s[kind].sha
}
