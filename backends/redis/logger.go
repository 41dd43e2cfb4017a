package redis

import (
	"context"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// quietLogger drops go-redis's own log lines. go-redis prints one line to
// stderr per failed dial, which during an outage floods the gateway's output
// past the plugin's rate-limited warning (docs/semantics.md §8) and past
// Python's logging configuration. Every failure still reaches the caller as
// an ErrUnavailable, and the plugin logs it, throttled and without identities.
type quietLogger struct{}

// Printf discards the message.
func (quietLogger) Printf(context.Context, string, ...interface{}) {}

var silenceGoRedis sync.Once

// silenceGoRedisLogger installs quietLogger once per process: go-redis's
// logger is a process-wide setting, and this package is its only user here.
func silenceGoRedisLogger() {
	silenceGoRedis.Do(func() { goredis.SetLogger(quietLogger{}) })
}
