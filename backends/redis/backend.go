package redis

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// Bounds checked on every request before any network traffic. They keep the
// Lua arithmetic exact: limit*window_us <= 3.6e15 < 2^53 (§3.3).
const (
	MaxLimit    = 1_000_000     // requests per window (§1)
	MaxWindowUS = 3_600_000_000 // one hour in µs, the longest §1 unit
	MaxKeyLen   = 256           // bytes; §6 keys are at most 227
	maxNowUS    = 1 << 52       // µs since the epoch (year 2112): room below 2^53 for now+window
)

// Backend evaluates requests against Redis with the shared Lua script of one
// algorithm, chosen when it is made. It is safe for concurrent use; go-redis's
// pool serves concurrent callers.
type Backend struct {
	client      redisClient
	kind        algorithms.Kind
	script      script
	shaArg      interface{}   // the digest, boxed once
	callTimeout time.Duration // context deadline of one Evaluate
	breaker     *breaker
	closed      atomic.Bool

	// ModeCluster only (nil otherwise): the cluster client, the cluster
	// clock and the give-back script of §11.1.
	cluster       *goredis.ClusterClient
	clock         *clusterClock
	giveBack      script
	giveBackArg   interface{}
	giveBacksLost atomic.Int64

	// blocked remembers Redis's refusals (§12); nil when local refusals
	// are off.
	blocked *blockedCache

	// pipe writes concurrent calls as pipelines (standalone and Sentinel;
	// nil on a Cluster).
	pipe *autoPipeline
}

// New validates opts and returns a Backend. It does not contact Redis:
// connections are made on first use, so a gateway can start while Redis is
// down (requests then fail with ErrUnavailable and the fail mode applies).
func New(opts Options) (*Backend, error) {
	return newBackend(opts, nil)
}

// newBackend is New with an injectable breaker clock (nil: monotonic time).
func newBackend(opts Options, clock func() int64) (*Backend, error) {
	silenceGoRedisLogger()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	co, err := opts.clientOptions()
	if err != nil {
		return nil, err
	}
	sc, err := loadScript(opts.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("redis backend: %w", err)
	}
	client, cluster, err := opts.newClient(co)
	if err != nil {
		return nil, err
	}
	b := &Backend{
		client: client,
		kind:   opts.Algorithm,
		script: sc,
		shaArg: sc.sha,
		// The whole call, including a NOSCRIPT reload, must end within one
		// dial plus one command timeout even if the server never answers.
		callTimeout: opts.ConnectTimeout + opts.CommandTimeout,
		breaker:     newBreaker(opts.BreakerFailures, opts.BreakerCooldown, clock),
		blocked:     newBlockedCache(opts.BlockedMaxKeys, nil),
	}
	if cluster != nil {
		if err := b.initCluster(cluster, opts); err != nil {
			_ = cluster.Close()
			return nil, err
		}
	} else {
		b.pipe = newAutoPipeline(client, func(ctx context.Context) error { return b.reload(ctx, b.script) })
	}
	return b, nil
}

// Evaluate runs one request's dimensions (keys[i] limited by limits[i], in the
// order user, user_per_server, tenant, tool) through the backend's script with one EVALSHA, and
// writes each dimension's outcome to out[i]. nowUS is the instant in µs since
// the Unix epoch, or 0 to use Redis TIME (production; docs/semantics.md §2).
//
// admitted is true when every dimension admitted the request and consumed
// quota; when false nothing was consumed (§4). On error out is not written:
// errors wrapping ErrUnavailable mean Redis did not answer usably, errors
// wrapping ErrInvalidRequest mean the arguments were wrong.
func (b *Backend) Evaluate(ctx context.Context, keys []string, limits []algorithms.Limit,
	nowUS int64, out []algorithms.Outcome) (admitted bool, err error) {
	if err := validate(keys, limits, nowUS, out); err != nil {
		return false, err
	}
	if b.closed.Load() {
		return false, ErrClosed
	}
	// A remembered refusal stays true while Redis is unreachable: before the breaker (§12).
	if b.blocked != nil && b.blocked.answer(keys, limits, nowUS, out) {
		return false, nil
	}
	ok, probe := b.breaker.allow()
	if !ok {
		return false, ErrBreakerOpen
	}
	var sentNS int64
	if b.blocked != nil {
		sentNS = b.blocked.monoNS()
	}
	var replyNowUS int64
	if b.cluster != nil {
		admitted, replyNowUS, err = b.callCluster(ctx, keys, limits, nowUS, out)
	} else {
		admitted, replyNowUS, err = b.call(ctx, keys, limits, nowUS, out)
	}
	b.breaker.done(probe, resultOf(err))
	if err == nil && !admitted && b.blocked != nil {
		b.blocked.record(keys, admitted, out, replyNowUS, sentNS, b.blocked.monoNS())
	}
	return admitted, err
}

// AnswerLocally refuses a request from the remembered refusals (§12) when
// one of its keys is still blocked, as Evaluate would without a Redis
// command, and returns true; it returns false, writing nothing, when Redis
// must be asked (or the arguments are bad, or the backend is closed, which
// Evaluate then reports). It never does I/O, so a caller may try it before
// handing the request to a goroutine (core.LocalAnswerer).
func (b *Backend) AnswerLocally(keys []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) bool {
	if b.blocked == nil || b.closed.Load() || validate(keys, limits, nowUS, out) != nil {
		return false
	}
	return b.blocked.answer(keys, limits, nowUS, out)
}

// resultOf maps a call's error to what the breaker learns from it.
func resultOf(err error) callResult {
	if err == nil {
		return resultSuccess
	}
	var be *backendError
	if errors.As(err, &be) && be.canceled {
		return resultNeutral
	}
	return resultFailure
}

// call does the network part of Evaluate on one Redis (standalone or the
// Sentinel primary): one script call with every key. It returns the
// verdict and the script's clock in µs.
func (b *Backend) call(ctx context.Context, keys []string, limits []algorithms.Limit,
	nowUS int64, out []algorithms.Outcome) (bool, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, b.callTimeout)
	defer cancel()
	return b.evalCheck(ctx, keys, limits, nowUS, out)
}

// evalCheck runs the backend's script for keys: EVALSHA, and on NOSCRIPT one
// SCRIPT LOAD and one more EVALSHA; on standalone and Sentinel as part of a
// pipeline of concurrent calls (pipeline.go). It returns the verdict and the
// script's clock in µs.
func (b *Backend) evalCheck(ctx context.Context, keys []string, limits []algorithms.Limit,
	nowUS int64, out []algorithms.Outcome) (bool, int64, error) {
	buf := argPool.Get().(*argBuf)
	defer func() {
		buf.reset()
		argPool.Put(buf)
	}()
	args := buf.fill(b.shaArg, keys, limits, nowUS)

	if b.pipe != nil {
		cmd, err := b.pipe.do(ctx, args)
		if err == nil {
			err = cmd.Err()
		}
		if err != nil {
			var be *backendError
			if errors.As(err, &be) {
				return false, 0, be // the NOSCRIPT reload failed: already sanitized
			}
			return false, 0, sanitize("evalsha", err)
		}
		return parseReply(cmd.Val(), limits, nowUS, out)
	}
	cmd := goredis.NewIntSliceCmd(ctx, args...)
	err := b.process(ctx, cmd)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := b.reload(ctx, b.script); err != nil {
			return false, 0, err
		}
		cmd = goredis.NewIntSliceCmd(ctx, args...)
		err = b.process(ctx, cmd)
	}
	if err != nil {
		if b.cluster != nil {
			// A dead or demoted node: learn the new slot owners now rather than
			// at go-redis's periodic reload (seconds away), so that decisions
			// resume as soon as a replica has taken over. Reloads are coalesced.
			b.cluster.ReloadState(ctx)
		}
		return false, 0, sanitize("evalsha", err)
	}
	return parseReply(cmd.Val(), limits, nowUS, out)
}

// process sends cmd; on a Cluster marked so that it is never sent again
// after it may have run (§11.1, "At most once").
func (b *Backend) process(ctx context.Context, cmd *goredis.IntSliceCmd) error {
	if b.cluster != nil {
		return b.client.Process(ctx, onceIntSliceCmd{cmd})
	}
	return b.client.Process(ctx, cmd)
}

// reload loads sc after a NOSCRIPT: the server lost its script cache
// (restart, failover, SCRIPT FLUSH; the cache is not replicated). Loading
// beats falling back to EVAL, which would send the whole source on every
// call while the cache stays empty. On a Cluster it loads on every primary.
func (b *Backend) reload(ctx context.Context, sc script) error {
	sha, err := b.client.ScriptLoad(ctx, sc.src).Result()
	if err != nil {
		return sanitize("script load", err)
	}
	if sha != sc.sha {
		return &backendError{op: "script load", kind: "unexpected digest"}
	}
	return nil
}

// validate refuses arguments that no correct caller passes, before any I/O.
func validate(keys []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) error {
	n := len(keys)
	switch {
	case n == 0 || n > maxKeys:
		return invalid("want 1 to 4 keys")
	case len(limits) != n:
		return invalid("limits and keys differ in length")
	case len(out) < n:
		return invalid("out is shorter than keys")
	case nowUS < 0 || nowUS > maxNowUS:
		return invalid("nowUS out of range (0 means Redis TIME)")
	}
	for i := 0; i < n; i++ {
		switch {
		case keys[i] == "":
			return invalidAt(i, "empty key")
		case len(keys[i]) > MaxKeyLen:
			return invalidAt(i, "key longer than MaxKeyLen")
		case limits[i].Limit < 1 || limits[i].Limit > MaxLimit:
			return invalidAt(i, "limit out of range 1..MaxLimit")
		case limits[i].WindowUS < 1 || limits[i].WindowUS > MaxWindowUS:
			return invalidAt(i, "window_us out of range 1..MaxWindowUS")
		}
	}
	return nil
}

// Algorithm returns the algorithm whose script the backend runs (core.Backend).
func (b *Backend) Algorithm() algorithms.Kind { return b.kind }

// BorrowsKeys reports true: Evaluate does not keep any key after it returns
// (it returns once its command is answered, or was abandoned unsent, and the
// pooled argument buffer is cleared), so callers may pass views of reused
// buffers.
// It implements core.KeyBorrower.
func (b *Backend) BorrowsKeys() bool { return true }

// Close releases the connection pool. Later Evaluate calls return ErrClosed.
// Closing twice is a no-op.
func (b *Backend) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := b.client.Close(); err != nil {
		return sanitize("close", err)
	}
	return nil
}
