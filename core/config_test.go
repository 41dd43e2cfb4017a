package core

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// Window lengths of the minute and hour units, in µs.
const (
	minuteUS = 60 * SecondUS
	hourUS   = 3600 * SecondUS
)

// canonical is LimiterConfig(by_user=10/60, by_tool={"search": 5/1}).canonical_json().
const canonical = `{"algorithm":"fixed_window","backend":"memory","by_tenant":null,"by_tool":{"search":{"limit":5,"window_s":1}},"by_user":{"limit":10,"window_s":60},"fail_mode":"open","memory_max_keys":100000,"redis_breaker_cooldown_ms":1000,"redis_breaker_failures":5,"redis_connect_timeout_ms":50,"redis_key_prefix":"rl","redis_timeout_ms":50,"redis_url":null}`

func TestParseConfigCanonical(t *testing.T) {
	cfg, err := ParseConfig([]byte(canonical))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Algorithm != algorithms.FixedWindow || cfg.Backend != "memory" || cfg.KeyPrefix != "rl" {
		t.Errorf("got %+v", cfg)
	}
	if cfg.ByUser == nil || *cfg.ByUser != (algorithms.Limit{Limit: 10, WindowUS: minuteUS}) {
		t.Errorf("by_user %+v", cfg.ByUser)
	}
	if cfg.ByTenant != nil {
		t.Errorf("by_tenant %+v, want nil", cfg.ByTenant)
	}
	if got := cfg.ByTool["search"]; got != (algorithms.Limit{Limit: 5, WindowUS: SecondUS}) || len(cfg.ByTool) != 1 {
		t.Errorf("by_tool %+v", cfg.ByTool)
	}
	if cfg.ConnectTimeout != 50*time.Millisecond || cfg.CommandTimeout != 50*time.Millisecond ||
		cfg.BreakerFailures != 5 || cfg.BreakerCooldown != time.Second || cfg.MemoryMaxKeys != 100_000 {
		t.Errorf("settings %+v", cfg)
	}
}

func TestParseConfigUserPerServer(t *testing.T) {
	tests := []struct {
		json string
		want *algorithms.Limit
	}{
		{`{"by_user_per_server":{"limit":20,"window_s":3600}}`, &algorithms.Limit{Limit: 20, WindowUS: hourUS}},
		{`{"by_user_per_server":null}`, nil},
		{canonical, nil}, // written by canonical_json only when set
	}
	for _, tt := range tests {
		cfg, err := ParseConfig([]byte(tt.json))
		if err != nil {
			t.Fatalf("%s: %v", tt.json, err)
		}
		if !reflect.DeepEqual(cfg.ByUserPerServer, tt.want) {
			t.Errorf("%s: by_user_per_server %+v, want %+v", tt.json, cfg.ByUserPerServer, tt.want)
		}
	}
}

func TestParseConfigRedis(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"algorithm":"token_bucket","backend":"redis","redis_url":"redis://127.0.0.1:1/0",
		"redis_timeout_ms":20,"redis_connect_timeout_ms":30,"redis_breaker_failures":3,"redis_breaker_cooldown_ms":250,
		"redis_key_prefix":"a.b-c_1","redis_blocked_max_keys":0,"by_tenant":{"limit":1000000,"window_s":3600}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Algorithm: algorithms.TokenBucket, Backend: "redis", RedisURL: "redis://127.0.0.1:1/0", KeyPrefix: "a.b-c_1",
		ConnectTimeout: 30 * time.Millisecond, CommandTimeout: 20 * time.Millisecond,
		BreakerFailures: 3, BreakerCooldown: 250 * time.Millisecond, MemoryMaxKeys: 100_000,
		RedisTLSCheckHostname: true, RedisMode: "standalone",
	}
	if cfg.ByTenant == nil || *cfg.ByTenant != (algorithms.Limit{Limit: 1_000_000, WindowUS: hourUS}) {
		t.Fatalf("by_tenant %+v", cfg.ByTenant)
	}
	if len(cfg.ByTool) != 0 {
		t.Fatalf("by_tool %+v", cfg.ByTool)
	}
	cfg.ByTenant, cfg.ByTool = nil, nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ name, json, mention string }{
		{"not json", `{`, "unexpected end"},
		{"trailing", `{} {}`, "after top-level value"},
		{"unknown field", `{"by_users":{"limit":1,"window_s":1}}`, "by_users"},
		{"algorithm", `{"algorithm":"leaky"}`, "leaky"},
		{"backend", `{"backend":"disk"}`, "disk"},
		{"wrong type", `{"by_user":30}`, "by_user"},
		{"fraction", `{"by_user":{"limit":1.5,"window_s":1}}`, "limit"},
		{"zero limit", `{"by_user":{"limit":0,"window_s":1}}`, "limit 0"},
		{"big limit", `{"by_tenant":{"limit":1000001,"window_s":1}}`, "limit 1000001"},
		{"window", `{"by_user":{"limit":1,"window_s":86400}}`, "window_s 86400"},
		{"missing window", `{"by_user":{"limit":1}}`, "window_s"},
		{"user_per_server zero", `{"by_user_per_server":{"limit":0,"window_s":1}}`, "by_user_per_server: limit 0"},
		{"user_per_server type", `{"by_user_per_server":"3/s"}`, "by_user_per_server"},
		{"tool null", `{"by_tool":{"a":null}}`, "missing rate"},
		{"tool empty", `{"by_tool":{"":{"limit":1,"window_s":1}}}`, "empty tool"},
		{"tool spaces", `{"by_tool":{" a":{"limit":1,"window_s":1}}}`, "white space"},
		{"prefix", `{"redis_key_prefix":"rl:x"}`, "redis_key_prefix"},
		{"prefix long", `{"redis_key_prefix":"` + strings.Repeat("a", 65) + `"}`, "redis_key_prefix"},
		{"redis url", `{"backend":"redis"}`, "redis_url"},
		{"timeout", `{"redis_timeout_ms":0}`, "redis_timeout_ms"},
		{"max keys", `{"memory_max_keys":0}`, "memory_max_keys"},
		{"breaker failures 0", `{"redis_breaker_failures":0}`, "redis_breaker_failures 0"},
		{"timeout above the table", `{"redis_timeout_ms":60001}`, "redis_timeout_ms 60001"},
		{"every problem", `{"algorithm":"x","backend":"y"}`, `"y"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.json))
			if err == nil {
				t.Fatalf("accepted %s", tt.json)
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("error %q: want ErrConfig mentioning %q", err, tt.mention)
			}
		})
	}
}

// TestParseConfigBounds checks every integer setting of the generated table
// at and just beyond its bounds: the bounds are python/rate_limiter_go/config.py's.
func TestParseConfigBounds(t *testing.T) {
	for _, s := range []intSetting{settingRedisConnectTimeoutMS, settingRedisTimeoutMS, settingRedisBreakerFailures,
		settingRedisBreakerCooldownMS, settingMemoryMaxKeys} {
		for _, tt := range []struct {
			v  int64
			ok bool
		}{{s.lo - 1, false}, {s.lo, true}, {s.hi, true}, {s.hi + 1, false}} {
			doc := fmt.Sprintf(`{%q:%d}`, s.name, tt.v)
			_, err := ParseConfig([]byte(doc))
			if (err == nil) != tt.ok {
				t.Errorf("%s: error %v, want accepted %v", doc, err, tt.ok)
			}
		}
	}
}

// TestParseConfigPluginLayerKeys: fail_mode is the plugin's (it applies the
// fail mode); Go accepts the key and reads nothing from it.
func TestParseConfigPluginLayerKeys(t *testing.T) {
	for _, doc := range []string{`{"fail_mode":"open"}`, `{"fail_mode":"closed"}`} {
		cfg, err := ParseConfig([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if !reflect.DeepEqual(cfg, DefaultConfig()) {
			t.Errorf("%s: %+v, want the defaults", doc, cfg)
		}
	}
}

// FuzzParseConfig: any input is either refused with ErrConfig or gives a
// configuration within the generated bounds; it never panics.
func FuzzParseConfig(f *testing.F) {
	f.Add(canonical)
	f.Add(`{"by_tool":{"a":{"limit":1,"window_s":60}},"memory_max_keys":1,"redis_key_prefix":"x"}`)
	f.Add(`{"backend":"redis","redis_url":"redis://h","redis_breaker_failures":1000}`)
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := ParseConfig([]byte(doc))
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("%q: error %v does not wrap ErrConfig", doc, err)
			}
			return
		}
		if !validPrefix(cfg.KeyPrefix) || cfg.MemoryMaxKeys < int(settingMemoryMaxKeys.lo) ||
			cfg.MemoryMaxKeys > int(settingMemoryMaxKeys.hi) ||
			cfg.BreakerFailures < int(settingRedisBreakerFailures.lo) {
			t.Fatalf("%q: accepted out of range: %+v", doc, cfg)
		}
		for _, l := range []*algorithms.Limit{cfg.ByUser, cfg.ByUserPerServer, cfg.ByTenant} {
			if l != nil && (l.Limit < 1 || l.Limit > MaxRateLimit) {
				t.Fatalf("%q: accepted limit %d", doc, l.Limit)
			}
		}
	})
}

func TestParseConfigDeployments(t *testing.T) {
	const redis = `"backend":"redis","redis_url":"redis://127.0.0.1:1/0"`
	tests := []struct {
		json    string
		mode    string
		sents   []string
		master  string
		problem string // "" when valid
	}{
		{`{` + redis + `}`, "standalone", nil, "", ""},
		{`{` + redis + `,"redis_mode":"cluster"}`, "cluster", nil, "", ""},
		{`{` + redis + `,"redis_mode":"sentinel","redis_sentinels":["a:1","b:2"],"redis_sentinel_master":"m"}`,
			"sentinel", []string{"a:1", "b:2"}, "m", ""},
		{`{` + redis + `,"redis_mode":"ring"}`, "", nil, "", "redis_mode"},
		{`{"redis_mode":"cluster"}`, "", nil, "", "needs backend redis"},
		{`{` + redis + `,"redis_sentinels":["a:1"]}`, "", nil, "", "only with redis_mode sentinel"},
		{`{` + redis + `,"redis_mode":"sentinel","redis_sentinel_master":"m"}`, "", nil, "", "redis_sentinels"},
		{`{` + redis + `,"redis_mode":"sentinel","redis_sentinels":["a:1"]}`, "", nil, "", "redis_sentinel_master"},
	}
	for _, tc := range tests {
		cfg, err := ParseConfig([]byte(tc.json))
		if tc.problem != "" {
			if err == nil || !strings.Contains(err.Error(), tc.problem) {
				t.Errorf("%s: error %v, want one naming %q", tc.json, err, tc.problem)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		if cfg.RedisMode != tc.mode || !reflect.DeepEqual(cfg.RedisSentinels, tc.sents) || cfg.RedisSentinelMaster != tc.master {
			t.Errorf("%s: mode %q sentinels %v master %q", tc.json, cfg.RedisMode, cfg.RedisSentinels, cfg.RedisSentinelMaster)
		}
	}
}
