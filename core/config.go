package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// Config is a validated limiter configuration, as parsed from the Python
// side's LimiterConfig.canonical_json(). Its bounds and defaults come from
// settings_gen.go, generated from python/rate_limiter_go/config.py, which is
// the authority (docs/engine.md).
type Config struct {
	Algorithm algorithms.Kind
	Backend   string // "memory" or "redis"

	ByUser *algorithms.Limit // nil: no user dimension
	// ByUserPerServer limits each user within each virtual server (tool
	// calls with a server only); nil: no user_per_server dimension.
	ByUserPerServer *algorithms.Limit
	ByTenant        *algorithms.Limit           // nil: no tenant dimension
	ByTool          map[string]algorithms.Limit // normalised tool name -> its limit

	RedisURL string
	// RedisMode is standalone, sentinel or cluster (§11); RedisSentinels
	// ("host:port" each) and RedisSentinelMaster are set in sentinel mode only.
	RedisMode           string
	RedisSentinels      []string
	RedisSentinelMaster string
	KeyPrefix           string        // §6 prefix, used by both backends
	ConnectTimeout      time.Duration // Redis connect timeout
	CommandTimeout      time.Duration // Redis command timeout
	BreakerFailures     int           // consecutive failures that open the breaker
	BreakerCooldown     time.Duration // how long an open breaker fails fast
	MemoryMaxKeys       int           // bound on keys in the memory store (§10)
	RedisBlockedMaxKeys int           // bound on keys remembered as refused (§12); 0: off

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

// rawConfig mirrors canonical_json without pluginLayerKeys; absent fields
// take LimiterConfig's defaults.
type rawConfig struct {
	Algorithm              *string             `json:"algorithm"`
	Backend                *string             `json:"backend"`
	ByTenant               *rawRate            `json:"by_tenant"`
	ByTool                 map[string]*rawRate `json:"by_tool"`
	ByUser                 *rawRate            `json:"by_user"`
	ByUserPerServer        *rawRate            `json:"by_user_per_server"`
	MemoryMaxKeys          *int64              `json:"memory_max_keys"`
	RedisBlockedMaxKeys    *int64              `json:"redis_blocked_max_keys"`
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
	RedisMode              *string             `json:"redis_mode"`
	RedisSentinels         []string            `json:"redis_sentinels"`
	RedisSentinelMaster    *string             `json:"redis_sentinel_master"`
}

// SecondUS is one second in µs, the unit of rate windows (§1).
const SecondUS = int64(1_000_000)

// intSetting is one integer setting of the generated table: its config
// name, default and inclusive bounds.
type intSetting struct {
	name        string
	def, lo, hi int64
}

// keyPrefixRE is KeyPrefixPattern anchored at both ends.
var keyPrefixRE = regexp.MustCompile(`^(?:` + KeyPrefixPattern + `)$`)

// DefaultConfig returns the configuration of an empty canonical JSON object:
// every setting at its default, no dimension.
func DefaultConfig() Config {
	kind, err := algorithms.ParseKind(DefaultAlgorithm)
	if err != nil {
		panic("core: generated DefaultAlgorithm is not an algorithm: " + err.Error())
	}
	ms := func(s intSetting) time.Duration { return time.Duration(s.def) * time.Millisecond }
	return Config{
		Algorithm:             kind,
		Backend:               DefaultBackend,
		ByTool:                map[string]algorithms.Limit{},
		KeyPrefix:             DefaultKeyPrefix,
		ConnectTimeout:        ms(settingRedisConnectTimeoutMS),
		CommandTimeout:        ms(settingRedisTimeoutMS),
		BreakerFailures:       int(settingRedisBreakerFailures.def),
		BreakerCooldown:       ms(settingRedisBreakerCooldownMS),
		MemoryMaxKeys:         int(settingMemoryMaxKeys.def),
		RedisBlockedMaxKeys:   int(settingRedisBlockedMaxKeys.def),
		RedisTLSCheckHostname: DefaultRedisTLSCheckHostname,
		RedisMode:             DefaultRedisMode,
	}
}

// ParseConfig parses and validates the JSON of LimiterConfig.canonical_json()
// (plus the host trust keys engine_go adds). Unknown fields, wrong types and
// out-of-range values are errors wrapping ErrConfig that list every problem
// found; the keys only the plugin layer applies (pluginLayerKeys) are
// accepted and not read.
func ParseConfig(data []byte) (Config, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for _, k := range pluginLayerKeys {
		delete(top, k)
	}
	rest, err := json.Marshal(top)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var raw rawConfig
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}

	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	cfg := DefaultConfig()
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
	if raw.RedisKeyPrefix != nil {
		cfg.KeyPrefix = *raw.RedisKeyPrefix
		if !validPrefix(cfg.KeyPrefix) {
			fail("redis_key_prefix %q: want a match of %s", cfg.KeyPrefix, KeyPrefixPattern)
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
	parseDeployment(&raw, &cfg, fail)
	// in reads an integer setting within the generated bounds; absent keeps the default.
	in := func(s intSetting, v *int64) (int64, bool) {
		if v == nil {
			return s.def, false
		}
		if *v < s.lo || *v > s.hi {
			fail("%s %d: want %d..%d", s.name, *v, s.lo, s.hi)
			return s.def, false
		}
		return *v, true
	}
	ms := func(s intSetting, v *int64, dst *time.Duration) {
		if n, ok := in(s, v); ok {
			*dst = time.Duration(n) * time.Millisecond
		}
	}
	ms(settingRedisConnectTimeoutMS, raw.RedisConnectTimeoutMS, &cfg.ConnectTimeout)
	ms(settingRedisTimeoutMS, raw.RedisTimeoutMS, &cfg.CommandTimeout)
	ms(settingRedisBreakerCooldownMS, raw.RedisBreakerCooldownMS, &cfg.BreakerCooldown)
	if n, ok := in(settingRedisBreakerFailures, raw.RedisBreakerFailures); ok {
		cfg.BreakerFailures = int(n)
	}
	if n, ok := in(settingMemoryMaxKeys, raw.MemoryMaxKeys); ok {
		cfg.MemoryMaxKeys = int(n)
	}
	if n, ok := in(settingRedisBlockedMaxKeys, raw.RedisBlockedMaxKeys); ok {
		cfg.RedisBlockedMaxKeys = int(n)
	}
	if len(problems) > 0 {
		return Config{}, fmt.Errorf("%w: %s", ErrConfig, strings.Join(problems, "; "))
	}
	return cfg, nil
}

// limitOf validates a canonical rate: 1..MaxRateLimit per one of rateWindowsS.
func limitOf(r *rawRate) (algorithms.Limit, error) {
	if r.Limit == nil || r.WindowS == nil {
		return algorithms.Limit{}, fmt.Errorf("rate needs limit and window_s")
	}
	if *r.Limit < 1 || *r.Limit > MaxRateLimit {
		return algorithms.Limit{}, fmt.Errorf("limit %d: want 1..%d", *r.Limit, MaxRateLimit)
	}
	known := false
	for _, w := range rateWindowsS {
		known = known || *r.WindowS == w
	}
	if !known {
		return algorithms.Limit{}, fmt.Errorf("window_s %d: want one of %v", *r.WindowS, rateWindowsS)
	}
	return algorithms.Limit{Limit: *r.Limit, WindowUS: *r.WindowS * SecondUS}, nil
}

// validPrefix reports whether p is a valid redis_key_prefix (§6).
func validPrefix(p string) bool { return keyPrefixRE.MatchString(p) }

// isSpace matches what Python's str.strip() removes: Unicode white space plus
// the ASCII separators U+001C..U+001F. Used to check that tool names arrive
// normalised.
func isSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// trimSpace strips isSpace runes from both ends; invalid UTF-8 is kept.
func trimSpace(s string) string {
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n <= 1 || !isSpace(r) {
			break
		}
		s = s[n:]
	}
	for len(s) > 0 {
		r, n := utf8.DecodeLastRuneInString(s)
		if r == utf8.RuneError && n <= 1 || !isSpace(r) {
			break
		}
		s = s[:len(s)-n]
	}
	return s
}

// parseDeployment reads redis_mode and the Sentinel settings (§11): the mode
// is one of redisModes, other than the default only with backend redis;
// 1 to MaxSentinels sentinel addresses and a master name in sentinel mode,
// neither in the others. Addresses are checked by the Redis backend.
func parseDeployment(raw *rawConfig, cfg *Config, fail func(string, ...any)) {
	cfg.RedisMode = DefaultRedisMode
	if raw.RedisMode != nil {
		cfg.RedisMode = *raw.RedisMode
		known := false
		for _, m := range redisModes {
			known = known || m == cfg.RedisMode
		}
		if !known {
			fail("redis_mode %q: want one of %v", cfg.RedisMode, redisModes)
		}
		if cfg.RedisMode != DefaultRedisMode && cfg.Backend != "redis" {
			fail("redis_mode %s needs backend redis", cfg.RedisMode)
		}
	}
	if cfg.RedisMode != "sentinel" {
		if raw.RedisSentinels != nil || raw.RedisSentinelMaster != nil {
			fail("redis_sentinels and redis_sentinel_master: only with redis_mode sentinel")
		}
		return
	}
	if n := len(raw.RedisSentinels); n < 1 || n > MaxSentinels {
		fail("redis_sentinels: want 1 to %d addresses, got %d", MaxSentinels, n)
	}
	cfg.RedisSentinels = append([]string(nil), raw.RedisSentinels...)
	if raw.RedisSentinelMaster == nil || *raw.RedisSentinelMaster == "" {
		fail("redis_sentinel_master is required with redis_mode sentinel")
	} else {
		cfg.RedisSentinelMaster = *raw.RedisSentinelMaster
	}
}
