package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// Options configures a Backend. The timeouts and the breaker settings have
// no defaults here: the caller passes them (the settings of docs/semantics.md
// §8, whose defaults and bounds python/rate_limiter_go/config.py defines),
// and a value below 1 is an error.
type Options struct {
	// Algorithm selects the one Lua script the backend runs.
	Algorithm algorithms.Kind
	// URL of the server: redis://[user:password@]host[:port][/db],
	// rediss://... for TLS (system roots, server name from the host), or
	// unix://[user:password@]/path/to/socket[?db=N].
	URL string
	// ConnectTimeout bounds one TCP (and TLS) dial. There is exactly one dial
	// attempt per connection: go-redis's dial retries are switched off.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each socket read and write of a command.
	CommandTimeout time.Duration
	// BreakerFailures is the number of consecutive failed calls that open
	// the circuit breaker.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open (calls fail fast
	// with ErrBreakerOpen, no network) before one probe call is let through.
	BreakerCooldown time.Duration
	// BlockedMaxKeys bounds the keys remembered as refused, whose requests
	// are then refused without a Redis command (docs/semantics.md §12);
	// 0 turns that off. Set it only where the refusals are exact: not on a
	// Cluster where a request may span slot groups (their give-backs free
	// units early).
	BlockedMaxKeys int
	// PoolSize is the number of pooled connections kept to Redis; 0 leaves
	// go-redis's default (10 per GOMAXPROCS).
	PoolSize int
	// TLSCAFile is a PEM file of CA certificates that verify the server of a
	// rediss:// URL instead of the system roots; "" keeps the system roots.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a PEM client certificate and its key,
	// presented to a server that asks for one (mTLS); both or neither.
	TLSCertFile string
	TLSKeyFile  string
	// TLSSkipHostnameCheck, for a rediss:// URL, verifies the server's
	// certificate chain against the roots but not that the certificate names
	// the URL's host (config redis_ssl_check_hostname: false). The chain is
	// always verified. Ignored without TLS.
	TLSSkipHostnameCheck bool
	// TrustCertFile and TrustCertDirs are the host process's SSL_CERT_FILE
	// and SSL_CERT_DIR (a colon-separated list of directories) as the host
	// saw them, "" when unset. Go reads its environment once, when its
	// runtime starts, so a variable set later by the host is invisible to
	// crypto/x509's system roots; with these, a rediss:// URL without
	// TLSCAFile trusts the system roots plus the certificates of that file
	// and of every file in those directories. Files that cannot be read or
	// hold no certificate are skipped, as OpenSSL and crypto/x509 skip them.
	TrustCertFile string
	TrustCertDirs string
	// Mode is how Redis is reached (§11); the zero value is ModeStandalone.
	Mode Mode
	// SentinelAddrs ("host:port" each) and SentinelMaster (the monitored
	// name) find the primary in ModeSentinel; empty in the other modes.
	SentinelAddrs  []string
	SentinelMaster string
	// ClusterClockKey is the key whose slot's primary serves the cluster
	// clock's TIME in ModeCluster (§11.1: "<prefix>:clock").
	ClusterClockKey string
}

// reservedQuery are URL query parameters that go-redis would accept but that
// this backend sets itself: timeouts and retries are part of the §8 contract
// and come from Options only.
var reservedQuery = []string{
	"dial_timeout", "read_timeout", "write_timeout", "pool_timeout",
	"max_retries", "min_retry_backoff", "max_retry_backoff",
}

// validate checks that every required field is set and none is negative.
func (o Options) validate() error {
	if o.URL == "" {
		return errors.New("redis backend: Options.URL is empty")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"ConnectTimeout", int64(o.ConnectTimeout)},
		{"CommandTimeout", int64(o.CommandTimeout)},
		{"BreakerFailures", int64(o.BreakerFailures)},
		{"BreakerCooldown", int64(o.BreakerCooldown)},
	} {
		if f.v < 1 {
			return fmt.Errorf("redis backend: Options.%s must be positive, got %d", f.name, f.v)
		}
	}
	if o.BlockedMaxKeys < 0 {
		return fmt.Errorf("redis backend: BlockedMaxKeys must not be negative, got %d", o.BlockedMaxKeys)
	}
	if o.PoolSize < 0 {
		return fmt.Errorf("redis backend: PoolSize must not be negative, got %d", o.PoolSize)
	}
	return o.validateDeployment()
}

// clientOptions turns o (already validated) into go-redis options. Errors
// never quote the URL, which may carry a password.
func (o Options) clientOptions() (*goredis.Options, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, errors.New("redis backend: URL is not a valid URL " +
			"(want redis://[user:password@]host[:port][/db], rediss://... or unix:///path)")
	}
	q := u.Query()
	for _, name := range reservedQuery {
		if q.Has(name) {
			return nil, fmt.Errorf("redis backend: URL parameter %q is not allowed: "+
				"timeouts and retries come from the backend options", name)
		}
	}
	co, err := goredis.ParseURL(o.URL)
	if err != nil {
		// go-redis's own messages name the scheme, the db number or the
		// unknown parameter, never the userinfo.
		return nil, fmt.Errorf("redis backend: bad URL: %w", err)
	}
	co.DialTimeout = o.ConnectTimeout
	co.DialerRetries = 1 // one dial attempt: a dead Redis costs one ConnectTimeout
	co.ReadTimeout = o.CommandTimeout
	co.WriteTimeout = o.CommandTimeout
	co.ContextTimeoutEnabled = true
	co.MaxRetries = -1 // go-redis: -1 disables retries (0 would mean the default 3)
	co.PoolTimeout = o.ConnectTimeout + o.CommandTimeout
	if o.PoolSize > 0 {
		co.PoolSize = o.PoolSize
	}
	// Nothing on connect but the HELLO/AUTH handshake: no CLIENT SETINFO, no
	// maintenance-notification negotiation, no second pool for pipelines.
	co.DisableIdentity = true
	co.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	co.PipelinePoolSize = -1
	if err := o.applyTLS(co); err != nil {
		return nil, err
	}
	return co, nil
}

// applyTLS loads the CA and client certificate files into co.TLSConfig, which
// go-redis set up for a rediss:// URL (server name from the host, TLS 1.2+).
// The files are read once, here: a certificate rotated on disk is picked up
// by a new Backend. Errors name the option and the file, never the URL.
func (o Options) applyTLS(co *goredis.Options) error {
	if co.TLSConfig == nil {
		if o.TLSCAFile != "" || o.TLSCertFile != "" || o.TLSKeyFile != "" {
			return errors.New("redis backend: TLS files need a rediss:// URL")
		}
		return nil // the host's trust settings and the hostname check only matter with TLS
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return errors.New("redis backend: TLSCertFile and TLSKeyFile go together")
	}
	cfg := co.TLSConfig.Clone()
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return fmt.Errorf("redis backend: TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("redis backend: TLS CA file %s holds no PEM certificate", o.TLSCAFile)
		}
		cfg.RootCAs = pool
	} else if o.TrustCertFile != "" || o.TrustCertDirs != "" {
		cfg.RootCAs = hostTrustPool(o.TrustCertFile, o.TrustCertDirs)
	}
	if o.TLSCertFile != "" {
		pair, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("redis backend: TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if o.TLSSkipHostnameCheck && !cfg.InsecureSkipVerify {
		// crypto/tls checks the chain and the name together; to keep the
		// chain check without the name, switch its verification off and
		// verify the chain here, on every handshake (resumed ones included).
		cfg.InsecureSkipVerify = true // #nosec G402 -- VerifyConnection (next line) verifies the chain against the configured roots on every handshake; only the host name check is off, as configured
		cfg.VerifyConnection = chainVerifier(cfg.RootCAs)
	}
	co.TLSConfig = cfg
	return nil
}

// chainVerifier returns a tls.Config.VerifyConnection that verifies the
// server's certificate chain against roots (nil: the system roots) for
// server authentication, without checking the host name.
func chainVerifier(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("redis backend: the server sent no certificate")
		}
		opts := x509.VerifyOptions{
			Roots:         roots,
			Intermediates: x509.NewCertPool(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return fmt.Errorf("redis backend: server certificate: %w", err)
		}
		return nil
	}
}

// hostTrustPool returns the system roots plus the PEM certificates of file
// and of the files directly in each directory of dirs (colon-separated).
// Unreadable files and files without certificates are skipped.
func hostTrustPool(file, dirs string) *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	add := func(path string) {
		if pem, err := os.ReadFile(path); err == nil { // #nosec G304 -- paths from SSL_CERT_FILE/SSL_CERT_DIR, which the operator sets, as crypto/x509 reads them
			pool.AppendCertsFromPEM(pem)
		}
	}
	if file != "" {
		add(file)
	}
	for _, dir := range strings.Split(dirs, ":") {
		if dir == "" {
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() {
				add(filepath.Join(dir, e.Name()))
			}
		}
	}
	return pool
}
