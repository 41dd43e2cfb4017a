package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// required returns o with the settings New requires filled in where zero.
func required(o Options) Options {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 50 * time.Millisecond
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 50 * time.Millisecond
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerCooldown == 0 {
		o.BreakerCooldown = time.Second
	}
	return o
}

// TestOptionsRequired: the §8 settings have no default in this package; a
// zero value (e.g. redis_breaker_failures 0) is refused, never replaced.
func TestOptionsRequired(t *testing.T) {
	full := required(Options{URL: "redis://127.0.0.1:1"})
	if err := full.validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		clear func(*Options)
	}{
		{"ConnectTimeout", func(o *Options) { o.ConnectTimeout = 0 }},
		{"CommandTimeout", func(o *Options) { o.CommandTimeout = 0 }},
		{"BreakerFailures", func(o *Options) { o.BreakerFailures = 0 }},
		{"BreakerCooldown", func(o *Options) { o.BreakerCooldown = 0 }},
	} {
		o := full
		tt.clear(&o)
		err := o.validate()
		if err == nil || !strings.Contains(err.Error(), tt.name+" must be positive") {
			t.Errorf("%s 0: error %v, want it refused", tt.name, err)
		}
	}
}

func TestOptionsRejected(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"empty URL", Options{}, "URL is empty"},
		{"negative connect timeout", Options{URL: "redis://h", ConnectTimeout: -1}, "ConnectTimeout must be positive"},
		{"negative command timeout", Options{URL: "redis://h", CommandTimeout: -1}, "CommandTimeout must be positive"},
		{"negative cooldown", Options{URL: "redis://h", BreakerCooldown: -1}, "BreakerCooldown must be positive"},
		{"negative breaker failures", Options{URL: "redis://h", BreakerFailures: -1}, "BreakerFailures"},
		{"negative pool size", Options{URL: "redis://h", PoolSize: -1}, "PoolSize"},
		{"unknown scheme", Options{URL: "http://h:6379"}, "invalid URL scheme"},
		{"bad db", Options{URL: "redis://h:6379/x"}, "database number"},
		{"unknown parameter", Options{URL: "redis://h:6379?colour=red"}, "unexpected option"},
		{"timeout in the URL", Options{URL: "redis://h:6379?read_timeout=5s"}, `"read_timeout" is not allowed`},
		{"unknown algorithm", Options{URL: "redis://h", Algorithm: algorithms.Kind(7)}, "no script for algorithm"},
		{"retries in the URL", Options{URL: "redis://h:6379?max_retries=3"}, `"max_retries" is not allowed`},
		{"empty unix path", Options{URL: "unix://"}, "unix socket path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(required(tt.opts))
			if err == nil {
				_ = b.Close()
				t.Fatal("New accepted bad options")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// A URL with a password must never appear in an error (logs would leak it).
func TestBadURLErrorHidesPassword(t *testing.T) {
	for _, u := range []string{
		"redis://user:s3cr3t@host:6379/%zz",        // url.Parse fails
		"redis://user:s3cr3t@host:6379/notanumber", // go-redis fails on the db
		"redis://user:s3cr3t@host:6379?nope=1",     // unknown parameter
		"redis://user:s3cr3t@host:6379?dial_timeout=1",
	} {
		_, err := New(required(Options{URL: u}))
		if err == nil {
			t.Fatalf("New(%q) accepted a bad URL", u)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error for a bad URL leaks the password: %q", err)
		}
	}
}

func TestClientOptions(t *testing.T) {
	tests := []struct {
		url                       string
		network, addr, user, pass string
		db                        int
		tls                       bool
		poolSize, wantPool        int
	}{
		{url: "redis://127.0.0.1:6390/2", network: "tcp", addr: "127.0.0.1:6390", db: 2},
		{url: "redis://u:p%40ss@h", network: "tcp", addr: "h:6379", user: "u", pass: "p@ss"},
		{url: "redis://:pw@h:1", network: "tcp", addr: "h:1", pass: "pw"},
		{url: "rediss://h:6380", network: "tcp", addr: "h:6380", tls: true},
		{url: "unix:///run/redis.sock?db=3", network: "unix", addr: "/run/redis.sock", db: 3},
		{url: "redis://h?pool_size=7", network: "tcp", addr: "h:6379", wantPool: 7},
		{url: "redis://h?pool_size=7", network: "tcp", addr: "h:6379", poolSize: 9, wantPool: 9},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			o := required(Options{URL: tt.url, ConnectTimeout: 30 * time.Millisecond,
				CommandTimeout: 70 * time.Millisecond, PoolSize: tt.poolSize})
			if err := o.validate(); err != nil {
				t.Fatal(err)
			}
			co, err := o.clientOptions()
			if err != nil {
				t.Fatal(err)
			}
			if co.Network != tt.network || co.Addr != tt.addr || co.Username != tt.user ||
				co.Password != tt.pass || co.DB != tt.db || (co.TLSConfig != nil) != tt.tls {
				t.Errorf("got network=%s addr=%s user=%q db=%d tls=%v", co.Network, co.Addr, co.Username, co.DB,
					co.TLSConfig != nil)
			}
			if tt.tls && co.TLSConfig.ServerName != "h" {
				t.Errorf("TLS server name %q, want the URL host", co.TLSConfig.ServerName)
			}
			if co.PoolSize != tt.wantPool {
				t.Errorf("pool size %d, want %d", co.PoolSize, tt.wantPool)
			}
			// The hot-path guarantees: one dial attempt, no command retries,
			// every wait bounded by the configured timeouts.
			if co.DialTimeout != 30*time.Millisecond || co.ReadTimeout != 70*time.Millisecond ||
				co.WriteTimeout != 70*time.Millisecond || co.PoolTimeout != 100*time.Millisecond {
				t.Errorf("timeouts dial=%v read=%v write=%v pool=%v", co.DialTimeout, co.ReadTimeout,
					co.WriteTimeout, co.PoolTimeout)
			}
			if co.MaxRetries != -1 || co.DialerRetries != 1 || !co.ContextTimeoutEnabled {
				t.Errorf("retries: MaxRetries=%d DialerRetries=%d ContextTimeoutEnabled=%v",
					co.MaxRetries, co.DialerRetries, co.ContextTimeoutEnabled)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	lim := algorithms.Limit{Limit: 10, WindowUS: 1_000_000}
	out3 := make([]algorithms.Outcome, 3)
	tests := []struct {
		name   string
		keys   []string
		limits []algorithms.Limit
		nowUS  int64
		out    []algorithms.Outcome
		want   string // "" means valid
	}{
		{"one key", []string{"k"}, []algorithms.Limit{lim}, 0, out3, ""},
		{"three keys, explicit now", []string{"a", "b", "c"},
			[]algorithms.Limit{lim, lim, lim}, 1_800_000_000_000_000, out3, ""},
		{"largest rate", []string{"k"},
			[]algorithms.Limit{{Limit: MaxLimit, WindowUS: MaxWindowUS}}, 0, out3, ""},
		{"no keys", nil, nil, 0, out3, "1 to 4 keys"},
		{"four keys", []string{"a", "b", "c", "d"},
			[]algorithms.Limit{lim, lim, lim, lim}, 0, make([]algorithms.Outcome, 4), ""},
		{"five keys", []string{"a", "b", "c", "d", "e"},
			[]algorithms.Limit{lim, lim, lim, lim, lim}, 0, make([]algorithms.Outcome, 5), "1 to 4 keys"},
		{"limits shorter", []string{"a", "b"}, []algorithms.Limit{lim}, 0, out3, "differ"},
		{"out shorter", []string{"a", "b"}, []algorithms.Limit{lim, lim}, 0, out3[:1],
			"out is shorter"},
		{"negative now", []string{"k"}, []algorithms.Limit{lim}, -1, out3, "nowUS"},
		{"now beyond 2^52", []string{"k"}, []algorithms.Limit{lim}, 1<<52 + 1, out3, "nowUS"},
		{"empty key", []string{"a", ""}, []algorithms.Limit{lim, lim}, 0, out3,
			"dimension 1: empty key"},
		{"long key", []string{strings.Repeat("k", MaxKeyLen+1)}, []algorithms.Limit{lim}, 0,
			out3, "longer"},
		{"zero limit", []string{"k"}, []algorithms.Limit{{Limit: 0, WindowUS: 1}}, 0, out3,
			"limit out of range"},
		{"limit too large", []string{"k"},
			[]algorithms.Limit{{Limit: MaxLimit + 1, WindowUS: 1}}, 0, out3, "limit out of range"},
		{"zero window", []string{"k"}, []algorithms.Limit{{Limit: 1}}, 0, out3,
			"window_us out of range"},
		{"window too long", []string{"k"},
			[]algorithms.Limit{{Limit: 1, WindowUS: MaxWindowUS + 1}}, 0, out3, "window_us out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(tt.keys, tt.limits, tt.nowUS, tt.out)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid request refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidRequest) || errors.Is(err, ErrUnavailable) {
				t.Errorf("%v: want ErrInvalidRequest, not ErrUnavailable", err)
			}
		})
	}
}

// Invalid requests and a closed backend are answered without any network
// traffic: the backend points at a port nobody listens on, and the answers
// are not connection errors. Invalid requests do not feed the breaker.
func TestEvaluateWithoutNetwork(t *testing.T) {
	b, err := New(required(Options{URL: "redis://127.0.0.1:1", BreakerFailures: 1}))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]algorithms.Outcome, 1)
	for i := 0; i < 3; i++ {
		_, err = b.Evaluate(context.Background(), []string{""},
			[]algorithms.Limit{{Limit: 1, WindowUS: 1}}, 0, out)
		if !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("got %v, want ErrInvalidRequest", err)
		}
	}
	if s := b.breaker.state(); s != stateClosed {
		t.Errorf("invalid requests moved the breaker to %v", s)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = b.Evaluate(context.Background(), []string{"k"},
		[]algorithms.Limit{{Limit: 1, WindowUS: 1}}, 0, out)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Evaluate after Close: %v, want ErrClosed", err)
	}
}

func TestScriptSHA(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket} {
		sha := ScriptSHA(k)
		if len(sha) != 40 || seen[sha] {
			t.Errorf("ScriptSHA(%v) = %q: want 40 hex digits, distinct per kind", k, sha)
		}
		seen[sha] = true
	}
	if ScriptSHA(algorithms.Kind(9)) != "" {
		t.Error("ScriptSHA of an unknown kind is not empty")
	}
}

// TestTLSVerificationOptions: the hostname-check switch and the host's trust
// settings act only on rediss:// URLs, never switch the chain check off, and
// leave ?skip_verify=true alone.
func TestTLSVerificationOptions(t *testing.T) {
	tests := []struct {
		name        string
		opts        Options
		tls         bool // a TLS config is expected
		ownVerify   bool // InsecureSkipVerify with our own chain check
		insecure    bool // InsecureSkipVerify
		customRoots bool // RootCAs set (nil: the system roots)
	}{
		{"plain URL ignores both", Options{URL: "redis://h:1", TLSSkipHostnameCheck: true, TrustCertFile: "/x",
			TrustCertDirs: "/y"}, false, false, false, false},
		{"rediss default", Options{URL: "rediss://h:1"}, true, false, false, false},
		{"no hostname check", Options{URL: "rediss://h:1", TLSSkipHostnameCheck: true}, true, true, true, false},
		{"skip_verify stays off", Options{URL: "rediss://h:1?skip_verify=true", TLSSkipHostnameCheck: true},
			true, false, true, false},
		{"host trust", Options{URL: "rediss://h:1", TrustCertFile: "/nonexistent.pem"}, true, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := required(tt.opts)
			if err := o.validate(); err != nil {
				t.Fatal(err)
			}
			co, err := o.clientOptions()
			if err != nil {
				t.Fatal(err)
			}
			if (co.TLSConfig != nil) != tt.tls {
				t.Fatalf("TLS config %v, want %v", co.TLSConfig != nil, tt.tls)
			}
			if co.TLSConfig == nil {
				return
			}
			c := co.TLSConfig
			if c.InsecureSkipVerify != tt.insecure || (c.VerifyConnection != nil) != tt.ownVerify ||
				(c.RootCAs != nil) != tt.customRoots {
				t.Fatalf("insecure %v, own verify %v, roots %v; want %v %v %v", c.InsecureSkipVerify,
					c.VerifyConnection != nil, c.RootCAs != nil, tt.insecure, tt.ownVerify, tt.customRoots)
			}
			if c.VerifyConnection != nil {
				if err := c.VerifyConnection(tls.ConnectionState{}); err == nil {
					t.Fatal("a handshake without a server certificate was accepted")
				}
			}
		})
	}
}
