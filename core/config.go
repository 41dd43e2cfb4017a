package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// Config is a validated limiter configuration, as parsed from the Python
// side's LimiterConfig.canonical_json().
type Config struct {
	Algorithm algorithms.Kind
	Backend   string // "memory" or "redis"

	ByUser *algorithms.Limit // nil: no user dimension
	// ByUserPerServer limits each user within each virtual server (tool
	// calls with a server only); nil: no user_per_server dimension.
	ByUserPerServer *algorithms.Limit
	ByTenant        *algorithms.Limit           // nil: no tenant dimension
	ByTool          map[string]algorithms.Limit // normalised tool name -> its limit

	RedisURL        string
	KeyPrefix       string        // §6 prefix, used by both backends
	FailMode        string        // "open" or "closed"; applied by the Python plugin
	ConnectTimeout  time.Duration // Redis connect timeout
	CommandTimeout  time.Duration // Redis command timeout
	BreakerFailures int           // consecutive failures that open the breaker
	BreakerCooldown time.Duration // how long an open breaker fails fast
	MemoryMaxKeys   int           // bound on keys in the memory store (§10)

	// PEM files for a rediss:// URL ("" when not set): a CA that replaces the
	// system roots, and a client certificate with its key (mTLS). Pass them to
	// the Redis backend's Options (TLSCAFile, TLSCertFile, TLSKeyFile).
	RedisTLSCAFile   string
	RedisTLSCertFile string
	RedisTLSKeyFile  string
	// RedisTLSCheckHostname false verifies a rediss:// server's certificate
	// chain but not its host name (config redis_ssl_check_hostname; default
	// true). Pass its negation to the Redis backend's TLSSkipHostnameCheck.
	RedisTLSCheckHostname bool

	// HostSSLCertFile and HostSSLCertDir are the Python process's
	// SSL_CERT_FILE and SSL_CERT_DIR when the engine was built ("" when
	// unset). They are not LimiterConfig settings: engine_go adds them to
	// the canonical JSON for a rediss:// URL, because the Go runtime read
	// its environment only once, at start (docs/redis-backend.md). Pass them
	// to the Redis backend's TrustCertFile and TrustCertDirs.
	HostSSLCertFile string
	HostSSLCertDir  string
}

// rawRate is a rate as canonical_json writes it.
type rawRate struct {
	Limit   *int64 `json:"limit"`
	WindowS *int64 `json:"window_s"`
}

// rawConfig mirrors canonical_json; absent fields take LimiterConfig's defaults.
type rawConfig struct {
	Algorithm              *string             `json:"algorithm"`
	Backend                *string             `json:"backend"`
	ByTenant               *rawRate            `json:"by_tenant"`
	ByTool                 map[string]*rawRate `json:"by_tool"`
	ByUser                 *rawRate            `json:"by_user"`
	ByUserPerServer        *rawRate            `json:"by_user_per_server"`
	FailMode               *string             `json:"fail_mode"`
	MemoryMaxKeys          *int64              `json:"memory_max_keys"`
	RedisBreakerCooldownMS *int64              `json:"redis_breaker_cooldown_ms"`
	RedisBreakerFailures   *int64              `json:"redis_breaker_failures"`
	RedisConnectTimeoutMS  *int64              `json:"redis_connect_timeout_ms"`
	RedisKeyPrefix         *string             `json:"redis_key_prefix"`
	RedisTimeoutMS         *int64              `json:"redis_timeout_ms"`
	RedisURL               *string             `json:"redis_url"`
	RedisTLSCAFile         *string             `json:"redis_tls_ca_file"`
	RedisTLSCertFile       *string             `json:"redis_tls_cert_file"`
	RedisTLSKeyFile        *string             `json:"redis_tls_key_file"`
	RedisTLSCheckHostname  *bool               `json:"redis_tls_check_hostname"`
	HostSSLCertFile        *string             `json:"host_ssl_cert_file"`
	HostSSLCertDir         *string             `json:"host_ssl_cert_dir"`
}

// ParseConfig parses and validates the JSON of LimiterConfig.canonical_json().
// Unknown fields, wrong types and out-of-range values are errors wrapping
// ErrConfig that list every problem found.
func ParseConfig(data []byte) (Config, error) {
	var raw rawConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: trailing data after the JSON object", ErrConfig)
	}

	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	cfg := Config{
		Algorithm:       algorithms.FixedWindow,
		Backend:         "memory",
		KeyPrefix:       "rl",
		FailMode:        "open",
		ConnectTimeout:  50 * time.Millisecond,
		CommandTimeout:  50 * time.Millisecond,
		BreakerFailures: 5,
		BreakerCooldown: time.Second,
		MemoryMaxKeys:   100_000,

		RedisTLSCheckHostname: true,
	}
	if raw.Algorithm != nil {
		k, err := algorithms.ParseKind(*raw.Algorithm)
		if err != nil {
			fail("algorithm: %v", err)
		}
		cfg.Algorithm = k
	}
	if raw.Backend != nil {
		cfg.Backend = *raw.Backend
		if cfg.Backend != "memory" && cfg.Backend != "redis" {
			fail("backend %q: want memory or redis", cfg.Backend)
		}
	}
	rate := func(what string, r *rawRate) *algorithms.Limit {
		if r == nil {
			return nil
		}
		l, err := limitOf(r)
		if err != nil {
			fail("%s: %v", what, err)
			return nil
		}
		return &l
	}
	cfg.ByUser = rate("by_user", raw.ByUser)
	cfg.ByUserPerServer = rate("by_user_per_server", raw.ByUserPerServer)
	cfg.ByTenant = rate("by_tenant", raw.ByTenant)
	cfg.ByTool = make(map[string]algorithms.Limit, len(raw.ByTool))
	for name, r := range raw.ByTool {
		switch {
		case name == "":
			fail("by_tool: empty tool name")
		case trimSpace(name) != name:
			fail("by_tool: tool name with surrounding white space (not normalised)")
		case r == nil:
			fail("by_tool[%q]: missing rate", name)
		default:
			if l := rate(fmt.Sprintf("by_tool[%q]", name), r); l != nil {
				cfg.ByTool[name] = *l
			}
		}
	}
	if raw.FailMode != nil {
		cfg.FailMode = *raw.FailMode
		if cfg.FailMode != "open" && cfg.FailMode != "closed" {
			fail("fail_mode %q: want open or closed", cfg.FailMode)
		}
	}
	if raw.RedisKeyPrefix != nil {
		cfg.KeyPrefix = *raw.RedisKeyPrefix
		if !validPrefix(cfg.KeyPrefix) {
			fail("redis_key_prefix %q: want 1 to 64 of A-Z a-z 0-9 _ . -", cfg.KeyPrefix)
		}
	}
	if raw.RedisURL != nil {
		cfg.RedisURL = *raw.RedisURL
	}
	for _, f := range []struct {
		name string
		v    *string
		dst  *string
	}{
		{"redis_tls_ca_file", raw.RedisTLSCAFile, &cfg.RedisTLSCAFile},
		{"redis_tls_cert_file", raw.RedisTLSCertFile, &cfg.RedisTLSCertFile},
		{"redis_tls_key_file", raw.RedisTLSKeyFile, &cfg.RedisTLSKeyFile},
	} {
		if f.v == nil {
			continue
		}
		*f.dst = *f.v
		if *f.v == "" || !strings.HasPrefix(cfg.RedisURL, "rediss://") {
			fail("%s: a file path, only with a rediss:// redis_url", f.name)
		}
	}
	if (cfg.RedisTLSCertFile == "") != (cfg.RedisTLSKeyFile == "") {
		fail("redis_tls_cert_file and redis_tls_key_file go together")
	}
	if raw.RedisTLSCheckHostname != nil {
		cfg.RedisTLSCheckHostname = *raw.RedisTLSCheckHostname
	}
	for _, f := range []struct {
		name string
		v    *string
		dst  *string
	}{
		{"host_ssl_cert_file", raw.HostSSLCertFile, &cfg.HostSSLCertFile},
		{"host_ssl_cert_dir", raw.HostSSLCertDir, &cfg.HostSSLCertDir},
	} {
		if f.v == nil {
			continue
		}
		*f.dst = *f.v
		if *f.v == "" || !strings.HasPrefix(cfg.RedisURL, "rediss://") {
			fail("%s: a path, only with a rediss:// redis_url", f.name)
		}
	}
	if cfg.Backend == "redis" && cfg.RedisURL == "" {
		fail("redis_url is required with backend redis")
	}
	ms := func(what string, v *int64, min int64, dst *time.Duration) {
		if v == nil {
			return
		}
		if *v < min || *v > 3_600_000 {
			fail("%s %d: want %d..3600000", what, *v, min)
			return
		}
		*dst = time.Duration(*v) * time.Millisecond
	}
	ms("redis_connect_timeout_ms", raw.RedisConnectTimeoutMS, 1, &cfg.ConnectTimeout)
	ms("redis_timeout_ms", raw.RedisTimeoutMS, 1, &cfg.CommandTimeout)
	ms("redis_breaker_cooldown_ms", raw.RedisBreakerCooldownMS, 0, &cfg.BreakerCooldown)
	if v := raw.RedisBreakerFailures; v != nil {
		if *v < 0 || *v > 1_000_000 {
			fail("redis_breaker_failures %d: want 0..1000000", *v)
		}
		cfg.BreakerFailures = int(*v)
	}
	if v := raw.MemoryMaxKeys; v != nil {
		if *v < 1 || *v > 1<<31 {
			fail("memory_max_keys %d: want 1..%d", *v, int64(1)<<31)
		}
		cfg.MemoryMaxKeys = int(*v)
	}
	if len(problems) > 0 {
		return Config{}, fmt.Errorf("%w: %s", ErrConfig, strings.Join(problems, "; "))
	}
	return cfg, nil
}

// limitOf validates a canonical rate: 1..MaxRateLimit per 1, 60 or 3600 s.
func limitOf(r *rawRate) (algorithms.Limit, error) {
	if r.Limit == nil || r.WindowS == nil {
		return algorithms.Limit{}, fmt.Errorf("rate needs limit and window_s")
	}
	if *r.Limit < 1 || *r.Limit > MaxRateLimit {
		return algorithms.Limit{}, fmt.Errorf("limit %d: want 1..%d", *r.Limit, MaxRateLimit)
	}
	switch *r.WindowS {
	case 1, 60, 3600:
	default:
		return algorithms.Limit{}, fmt.Errorf("window_s %d: want 1, 60 or 3600", *r.WindowS)
	}
	return algorithms.Limit{Limit: *r.Limit, WindowUS: *r.WindowS * SecondUS}, nil
}

// validPrefix matches [A-Za-z0-9_.-]{1,64} (§6).
func validPrefix(p string) bool {
	if len(p) < 1 || len(p) > 64 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
