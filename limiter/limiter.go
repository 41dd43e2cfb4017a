// Package limiter is the Go engine's composition root: it turns a plugin name
// and the canonical configuration JSON (python/rate_limiter_go/config.py's
// LimiterConfig.canonical_json()) into a ready limiter. It parses the
// configuration (core.ParseConfig), makes or shares the backend for it (one
// memory store per name and configuration, docs/semantics.md §10; one Redis
// backend per name and configuration, reference counted by its limiters) and
// binds the two (core.NewLimiter). The binding (pyext), the Go tests, the
// chaos flood tool and the Go benchmarks all build their limiters here.
package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rate-limiter-go/rate_limiter_go/backends/memory"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/core"
)

// Request, Decision and Dimension are the engine's request and answer
// (core), named here so that callers of this package need no other.
type (
	Request   = core.Request
	Decision  = core.Decision
	Dimension = core.Dimension
)

// The reported dimensions of a Decision (docs/semantics.md §4, §5).
const (
	DimUser          = core.DimUser
	DimUserPerServer = core.DimUserPerServer
	DimTenant        = core.DimTenant
	DimTool          = core.DimTool
	DimNone          = core.DimNone
)

// ErrConfig marks a configuration Open refuses.
var ErrConfig = core.ErrConfig

// Limiter is one open limiter: a configuration bound to its (possibly
// shared) backend. It is safe for concurrent use.
type Limiter struct {
	lim     *core.Limiter
	store   *memory.Store  // the memory backend, nil on Redis
	redis   *redis.Backend // the Redis backend, nil on memory
	release func()         // drops this limiter's share of a Redis backend; idempotent
}

// Evaluate checks and, if admitted, consumes one request (docs/semantics.md
// §4). Errors are classified by Classify.
func (l *Limiter) Evaluate(ctx context.Context, r Request) (Decision, error) {
	return l.lim.Evaluate(ctx, r)
}

// EvaluateLocal answers a request that needs no I/O (no dimension applies,
// or a refusal the Redis backend remembers, docs/semantics.md §12) and
// reports ok; ok false means nothing was evaluated and the request needs
// Evaluate. Errors as Evaluate's.
func (l *Limiter) EvaluateLocal(r Request) (Decision, bool, error) {
	return l.lim.EvaluateLocal(r)
}

// MemoryKeys returns the number of keys in the limiter's memory store, or -1
// when its backend is Redis.
func (l *Limiter) MemoryKeys() int {
	if l.store == nil {
		return -1
	}
	return l.store.Len()
}

// GiveBacksLost returns how many Redis Cluster give-backs of the limiter's
// backend failed (docs/semantics.md §11.1, Bounds); 0 on memory and on a
// single Redis. A shared backend counts its limiters' together.
func (l *Limiter) GiveBacksLost() int64 {
	if l.redis == nil {
		return 0
	}
	return l.redis.GiveBacksLost()
}

// LocalRefusals returns how many requests the limiter's Redis backend
// refused from remembered refusals, without a Redis command
// (docs/semantics.md §12); 0 on memory. A shared backend counts its
// limiters' together.
func (l *Limiter) LocalRefusals() int64 {
	if l.redis == nil {
		return 0
	}
	return l.redis.LocalRefusals()
}

// Close releases the limiter's share of a Redis backend, which is closed with
// its last limiter. Memory state survives (§10). Closing twice is a no-op.
func (l *Limiter) Close() { l.release() }

// Registry holds the backends shared by the limiters it opens. The zero value
// is not usable; call NewRegistry. It is safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	stores map[shareKey]*memory.Store
	redis  map[shareKey]*redisRef
}

// shareKey identifies a shared backend: the plugin name and the canonical
// configuration, which includes the algorithm and the backend settings.
type shareKey struct{ name, config string }

type redisRef struct {
	b    *redis.Backend
	refs int
}

// NewRegistry returns a registry with no shared backends.
func NewRegistry() *Registry {
	return &Registry{stores: map[shareKey]*memory.Store{}, redis: map[shareKey]*redisRef{}}
}

// defaultRegistry is the process-wide registry of Open: the gateway rebuilds
// plugin instances, and their counters must carry on (§10).
var defaultRegistry = NewRegistry()

// Open is Registry.Open on the process-wide registry.
func Open(name, configJSON string) (*Limiter, error) { return defaultRegistry.Open(name, configJSON) }

// ResetMemoryStores is Registry.ResetMemoryStores on the process-wide
// registry. Not for production use: it breaks the sharing of §10.
func ResetMemoryStores() { defaultRegistry.ResetMemoryStores() }

// Open parses configJSON and returns a limiter of it. Limiters of one
// registry with the same name and configuration share their state: one
// memory store, or one Redis backend (connection pool and breaker). Errors
// wrap ErrConfig for a refused configuration.
func (g *Registry) Open(name, configJSON string) (*Limiter, error) {
	cfg, err := core.ParseConfig([]byte(configJSON))
	if err != nil {
		return nil, err
	}
	k := shareKey{name, configJSON}
	l := &Limiter{release: func() {}}
	var backend core.Backend
	switch cfg.Backend {
	case "memory":
		if l.store, err = g.memoryStore(k, cfg); err != nil {
			return nil, err
		}
		backend = l.store
	case "redis":
		b, release, err := g.acquireRedis(k, cfg)
		if err != nil {
			return nil, err
		}
		backend, l.redis, l.release = b, b, release
	default:
		return nil, fmt.Errorf("%w: backend %q not supported", ErrConfig, cfg.Backend)
	}
	if l.lim, err = core.NewLimiter(cfg, backend); err != nil {
		l.release()
		return nil, err
	}
	return l, nil
}

// ResetMemoryStores forgets every shared memory store, so that tests start
// from empty state; limiters already open keep the store they have.
func (g *Registry) ResetMemoryStores() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stores = map[shareKey]*memory.Store{}
}

// memoryStore returns the store of k, made for cfg on first use.
func (g *Registry) memoryStore(k shareKey, cfg core.Config) (*memory.Store, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.stores[k]; s != nil {
		return s, nil
	}
	s, err := memory.New(cfg.Algorithm, cfg.MemoryMaxKeys)
	if err != nil {
		return nil, fmt.Errorf("memory backend: %w", err)
	}
	g.stores[k] = s
	return s, nil
}

// redisOptions returns the Redis backend options of a configuration. A
// redis_mode the backend does not know is an error.
func redisOptions(cfg core.Config) (redis.Options, error) {
	mode, err := redis.ParseMode(cfg.RedisMode)
	if err != nil {
		return redis.Options{}, err
	}
	return redis.Options{
		Mode:                 mode,
		SentinelAddrs:        cfg.RedisSentinels,
		SentinelMaster:       cfg.RedisSentinelMaster,
		ClusterClockKey:      clusterClockKey(cfg),
		Algorithm:            cfg.Algorithm,
		URL:                  cfg.RedisURL,
		ConnectTimeout:       cfg.ConnectTimeout,
		CommandTimeout:       cfg.CommandTimeout,
		BreakerFailures:      cfg.BreakerFailures,
		BreakerCooldown:      cfg.BreakerCooldown,
		BlockedMaxKeys:       blockedMaxKeys(cfg),
		TLSCAFile:            cfg.RedisTLSCAFile,
		TLSCertFile:          cfg.RedisTLSCertFile,
		TLSKeyFile:           cfg.RedisTLSKeyFile,
		TLSSkipHostnameCheck: !cfg.RedisTLSCheckHostname,
		TrustCertFile:        cfg.HostSSLCertFile,
		TrustCertDirs:        cfg.HostSSLCertDir,
	}, nil
}

// blockedMaxKeys is the bound on remembered refusals (docs/semantics.md
// §12): the configured one, but 0 on a Cluster unless every request has at
// most one key (one dimension configured), since give-backs between slot
// groups can free a refused key early.
func blockedMaxKeys(cfg core.Config) int {
	if cfg.RedisMode != "cluster" {
		return cfg.RedisBlockedMaxKeys
	}
	dimensions := 0
	for _, on := range []bool{cfg.ByUser != nil, cfg.ByUserPerServer != nil, cfg.ByTenant != nil, len(cfg.ByTool) > 0} {
		if on {
			dimensions++
		}
	}
	if dimensions > 1 {
		return 0
	}
	return cfg.RedisBlockedMaxKeys
}

// clusterClockKey is the key whose slot's primary serves the cluster clock
// (docs/semantics.md §11.1), "" outside cluster mode.
func clusterClockKey(cfg core.Config) string {
	if cfg.RedisMode != "cluster" {
		return ""
	}
	return cfg.KeyPrefix + ":clock"
}

// acquireRedis returns the Redis backend of k, made on first use, and a
// function that drops this share of it (the last share closes it).
func (g *Registry) acquireRedis(k shareKey, cfg core.Config) (*redis.Backend, func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ref := g.redis[k]
	if ref == nil {
		opts, err := redisOptions(cfg)
		if err != nil {
			return nil, nil, err
		}
		b, err := redis.New(opts)
		if err != nil {
			return nil, nil, err
		}
		ref = &redisRef{b: b}
		g.redis[k] = ref
	}
	ref.refs++
	var once sync.Once
	return ref.b, func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if ref.refs--; ref.refs == 0 {
				delete(g.redis, k)
				_ = ref.b.Close() // a close error leaves nothing to do: the pool is gone either way
			}
		})
	}, nil
}

// Class is what an Evaluate error means to the caller.
type Class int

// The classes of Evaluate errors.
const (
	// Internal: a bug, e.g. an unexpected error from a backend.
	Internal Class = iota
	// BadArgument: a malformed identity, time or request; nothing was
	// evaluated.
	BadArgument
	// Unavailable: the backend did not answer usably (Redis error, timeout,
	// breaker open); the plugin applies fail_mode (§8).
	Unavailable
)

// Classify returns the class of an error returned by Evaluate.
func Classify(err error) Class {
	switch {
	case errors.Is(err, core.ErrBadArgument),
		errors.Is(err, memory.ErrBadRequest),
		errors.Is(err, redis.ErrInvalidRequest):
		return BadArgument
	case errors.Is(err, core.ErrBackend):
		return Unavailable
	}
	return Internal
}
