package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Mode is how a Backend reaches Redis (docs/semantics.md §11).
type Mode uint8

// The deployment modes. The zero value is ModeStandalone.
const (
	// ModeStandalone: one Redis at Options.URL.
	ModeStandalone Mode = iota
	// ModeSentinel: the primary named Options.SentinelMaster, found through
	// Options.SentinelAddrs; Options.URL gives scheme, user, password and
	// database of the data nodes, not their address.
	ModeSentinel
	// ModeCluster: a Redis Cluster; Options.URL names one seed node.
	ModeCluster
)

// ParseMode returns the Mode of a redis_mode setting.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "standalone", "":
		return ModeStandalone, nil
	case "sentinel":
		return ModeSentinel, nil
	case "cluster":
		return ModeCluster, nil
	}
	return 0, fmt.Errorf("redis mode %q: want standalone, sentinel or cluster", s)
}

// String returns the mode's setting name.
func (m Mode) String() string {
	switch m {
	case ModeSentinel:
		return "sentinel"
	case ModeCluster:
		return "cluster"
	}
	return "standalone"
}

// redisClient is what a Backend needs of a go-redis client: *goredis.Client
// (standalone, and Sentinel's failover client) and *goredis.ClusterClient.
type redisClient interface {
	Process(ctx context.Context, cmd goredis.Cmder) error
	ScriptLoad(ctx context.Context, script string) *goredis.StringCmd
	Close() error
}

// clusterClockRefresh is how often the cluster clock samples TIME (§11.1).
const clusterClockRefresh = time.Second

// validateDeployment checks the mode's own options.
func (o Options) validateDeployment() error {
	switch o.Mode {
	case ModeStandalone, ModeCluster:
		if len(o.SentinelAddrs) > 0 || o.SentinelMaster != "" {
			return errors.New("redis backend: SentinelAddrs and SentinelMaster are for ModeSentinel only")
		}
	case ModeSentinel:
		if len(o.SentinelAddrs) == 0 || o.SentinelMaster == "" {
			return errors.New("redis backend: ModeSentinel needs SentinelAddrs and SentinelMaster")
		}
		for _, a := range o.SentinelAddrs {
			host, port, err := net.SplitHostPort(a)
			if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				return fmt.Errorf("redis backend: sentinel address %q: want host:port", a)
			}
		}
	default:
		return fmt.Errorf("redis backend: unknown Mode %d", o.Mode)
	}
	if o.Mode == ModeCluster && o.ClusterClockKey == "" {
		return errors.New("redis backend: ModeCluster needs ClusterClockKey")
	}
	return nil
}

// newClient makes the go-redis client of o's mode from the standalone
// options co (parsed from the URL, timeouts and TLS applied). Every client
// has retries off: a script that may have run is never sent again (§11.1).
func (o Options) newClient(co *goredis.Options) (redisClient, *goredis.ClusterClient, error) {
	switch o.Mode {
	case ModeSentinel:
		if co.Network == "unix" {
			return nil, nil, errors.New("redis backend: ModeSentinel needs a redis:// or rediss:// URL")
		}
		fo := &goredis.FailoverOptions{
			MasterName:    o.SentinelMaster,
			SentinelAddrs: o.SentinelAddrs,
			Username:      co.Username,
			Password:      co.Password,
			DB:            co.DB,
			Protocol:      co.Protocol,
			TLSConfig:     co.TLSConfig, // go-redis uses it for the sentinels too

			DialTimeout:           co.DialTimeout,
			DialerRetries:         co.DialerRetries,
			ReadTimeout:           co.ReadTimeout,
			WriteTimeout:          co.WriteTimeout,
			ContextTimeoutEnabled: co.ContextTimeoutEnabled,
			MaxRetries:            co.MaxRetries,
			PoolSize:              co.PoolSize,
			PoolTimeout:           co.PoolTimeout,
			DisableIdentity:       co.DisableIdentity,
		}
		// The watcher asks the first sentinel, as go-redis's failover client
		// does first; the same time bounds and TLS, no data credentials.
		so := &goredis.Options{
			Addr: o.SentinelAddrs[0], TLSConfig: co.TLSConfig, DialTimeout: co.DialTimeout,
			ReadTimeout: co.ReadTimeout, WriteTimeout: co.WriteTimeout, MaxRetries: -1, DisableIdentity: true,
		}
		return newSentinelClient(func() *goredis.Client { return goredis.NewFailoverClient(fo) }, so,
			o.SentinelMaster, 2*(o.ConnectTimeout+o.CommandTimeout)), nil, nil
	case ModeCluster:
		if co.Network == "unix" {
			return nil, nil, errors.New("redis backend: ModeCluster needs a redis:// or rediss:// URL")
		}
		if co.DB != 0 {
			return nil, nil, errors.New("redis backend: a Redis Cluster has only database 0")
		}
		cc := goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:     []string{co.Addr},
			Username:  co.Username,
			Password:  co.Password,
			Protocol:  co.Protocol,
			TLSConfig: co.TLSConfig,

			DialTimeout:           co.DialTimeout,
			DialerRetries:         co.DialerRetries,
			ReadTimeout:           co.ReadTimeout,
			WriteTimeout:          co.WriteTimeout,
			ContextTimeoutEnabled: co.ContextTimeoutEnabled,
			MaxRetries:            co.MaxRetries,
			PoolSize:              co.PoolSize,
			PoolTimeout:           co.PoolTimeout,
			DisableIdentity:       co.DisableIdentity,
			// Primaries only: decisions are never made from a replica (§11).
			ReadOnly: false,
		})
		return cc, cc, nil
	}
	return goredis.NewClient(co), nil, nil
}

// onceIntSliceCmd is an EVALSHA whose reply is an integer array, marked so
// that go-redis's cluster client never sends it again after a network error
// (it may have run). MOVED, ASK and READONLY replies, which prove it did
// not run, are still followed.
type onceIntSliceCmd struct{ *goredis.IntSliceCmd }

// NoRetry reports true: see onceIntSliceCmd.
func (onceIntSliceCmd) NoRetry() bool { return true }

// onceIntCmd is onceIntSliceCmd for scripts that reply with one integer.
type onceIntCmd struct{ *goredis.IntCmd }

// NoRetry reports true: see onceIntSliceCmd.
func (onceIntCmd) NoRetry() bool { return true }
