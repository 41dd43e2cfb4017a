package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"unsafe"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// Dimension is the kind of a rate limiting dimension, in evaluation order (§4).
type Dimension uint8

// The dimensions of docs/semantics.md §5, in evaluation order; DimNone
// reports that none applied.
const (
	DimUser          Dimension = iota
	DimUserPerServer           // the user within the virtual server of a tool call
	DimTenant
	DimTool
	DimNone
)

// MaxDimensions is the most dimensions one request has (user,
// user_per_server, tenant, tool), and so the most keys a backend gets.
const MaxDimensions = 4

// String returns the dimension's name as used in keys and descriptions.
func (d Dimension) String() string {
	switch d {
	case DimUser:
		return "user"
	case DimUserPerServer:
		return "user_per_server"
	case DimTenant:
		return "tenant"
	case DimTool:
		return "tool"
	}
	return "none"
}

// MaxNowUS is the largest explicit time accepted, in Unix µs (2^52, the year
// 2112): the Redis scripts compute in doubles, exact below 2^53, and now plus
// a window must stay there. The Redis backend has the same bound.
const MaxNowUS = int64(1) << 52

// Decision is one request's answer from the reported dimension (§4, §7).
// With Dimension DimNone no dimension applied: admitted, no headers.
type Decision struct {
	Admitted    bool
	Dimension   Dimension
	Limit       int64 // X-RateLimit-Limit
	Remaining   int64 // X-RateLimit-Remaining
	ResetAtUnix int64 // X-RateLimit-Reset, Unix seconds rounded up
	RetryAfterS int64 // Retry-After in seconds (>= 1) when blocked, else 0
}

// toolDim is a configured tool's precomputed key and limit.
type toolDim struct {
	key   string
	limit algorithms.Limit
}

// scratch is the per-call working memory of Evaluate, pooled so the hot path
// does not allocate.
type scratch struct {
	bufs   [MaxDimensions][]byte
	esc    []byte
	keys   [MaxDimensions]string
	limits [MaxDimensions]algorithms.Limit
	dims   [MaxDimensions]Dimension
	out    [MaxDimensions]algorithms.Outcome
}

// Limiter evaluates requests of one configuration against one backend. It is
// safe for concurrent use. It does not own the backend: closing the backend is
// the caller's business, since backends are shared (§10).
type Limiter struct {
	backend    Backend
	borrow     bool // backend accepts key views into scratch buffers
	userPrefix string
	userLimit  algorithms.Limit
	hasUser    bool
	usPrefix   string // user_per_server
	usLimit    algorithms.Limit
	hasUserSrv bool
	tenPrefix  string
	tenLimit   algorithms.Limit
	hasTenant  bool
	tools      map[string]toolDim // escaped tool name -> key and limit
	rawTools   map[string]toolDim // configured tool name -> key and limit
	pool       sync.Pool
}

// NewLimiter binds a configuration to a backend made for its algorithm.
func NewLimiter(cfg Config, backend Backend) (*Limiter, error) {
	if backend == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrConfig)
	}
	if backend.Algorithm() != cfg.Algorithm {
		return nil, fmt.Errorf("%w: a %v backend for a %v configuration", ErrConfig, backend.Algorithm(), cfg.Algorithm)
	}
	tag := algorithmKeyTags[cfg.Algorithm.String()]
	if tag == "" {
		return nil, fmt.Errorf("%w: algorithm %v", ErrConfig, cfg.Algorithm)
	}
	if !validPrefix(cfg.KeyPrefix) {
		return nil, fmt.Errorf("%w: key prefix %q", ErrConfig, cfg.KeyPrefix)
	}
	l := &Limiter{backend: backend, tools: make(map[string]toolDim, len(cfg.ByTool)),
		rawTools: make(map[string]toolDim, len(cfg.ByTool))}
	if b, ok := backend.(KeyBorrower); ok {
		l.borrow = b.BorrowsKeys()
	}
	if cfg.ByUser != nil {
		l.hasUser, l.userLimit = true, *cfg.ByUser
		l.userPrefix = keyPrefix(cfg.KeyPrefix, tag, "user", l.userLimit.Limit, l.userLimit.WindowUS)
	}
	if cfg.ByUserPerServer != nil {
		l.hasUserSrv, l.usLimit = true, *cfg.ByUserPerServer
		l.usPrefix = keyPrefix(cfg.KeyPrefix, tag, DimUserPerServer.String(), l.usLimit.Limit, l.usLimit.WindowUS)
	}
	if cfg.ByTenant != nil {
		l.hasTenant, l.tenLimit = true, *cfg.ByTenant
		l.tenPrefix = keyPrefix(cfg.KeyPrefix, tag, "tenant", l.tenLimit.Limit, l.tenLimit.WindowUS)
	}
	for name, lim := range cfg.ByTool {
		esc := EscapeIdentity(name)
		key := keyPrefix(cfg.KeyPrefix, tag, "tool", lim.Limit, lim.WindowUS) + "{" + esc + "}"
		l.tools[esc] = toolDim{key: key, limit: lim}
		l.rawTools[name] = l.tools[esc]
	}
	l.pool.New = func() any {
		s := &scratch{esc: make([]byte, 0, hashedLen+MaxEscapedIdentity)}
		for i := range s.bufs {
			s.bufs[i] = make([]byte, 0, 1024) // room for a composed user_per_server identity and its copy for hashing
		}
		return s
	}
	return l, nil
}

// Request is one request's normalised identities (docs/semantics.md §5) and
// its time.
type Request struct {
	// User is the normalised user, never empty ("anonymous" if unknown).
	User string
	// Server is the virtual server of a tool call; "" means none, and the
	// user_per_server dimension does not apply.
	Server string
	// Tenant "" means no tenant.
	Tenant string
	// Tool "" means no tool; a tool not in by_tool is not limited.
	Tool string
	// NowUS is the time in Unix µs, 0 for the backend's clock.
	NowUS int64
}

// Evaluate checks and, if admitted, consumes one request (§4). An
// identity starting with IdentityMarker is already escaped. Errors wrap
// ErrBadArgument (nothing was evaluated) or ErrBackend.
func (l *Limiter) Evaluate(ctx context.Context, r Request) (Decision, error) {
	user, tenant, tool, nowUS := r.User, r.Tenant, r.Tool, r.NowUS
	if nowUS < 0 || nowUS > MaxNowUS {
		return Decision{}, fmt.Errorf("%w: now_us %d outside 0..2^52", ErrBadArgument, nowUS)
	}
	s := l.pool.Get().(*scratch)
	defer l.pool.Put(s)

	if user == "" {
		// Required even when no user limit is configured: the caller
		// normalises an unknown user to "anonymous" (§5).
		return Decision{}, fmt.Errorf("%w: empty user", ErrBadArgument)
	}
	n := 0
	var err error
	if l.hasUser {
		if s.bufs[n], err = appendTagged(append(s.bufs[n][:0], l.userPrefix...), user); err != nil {
			return Decision{}, fmt.Errorf("user: %w", err)
		}
		s.limits[n], s.dims[n] = l.userLimit, DimUser
		n++
	}
	if l.hasUserSrv && r.Server != "" {
		if s.bufs[n], err = appendUserServer(append(s.bufs[n][:0], l.usPrefix...), len(l.usPrefix), user, r.Server); err != nil {
			return Decision{}, fmt.Errorf("user_per_server: %w", err)
		}
		s.limits[n], s.dims[n] = l.usLimit, DimUserPerServer
		n++
	}
	if l.hasTenant && tenant != "" {
		if s.bufs[n], err = appendTagged(append(s.bufs[n][:0], l.tenPrefix...), tenant); err != nil {
			return Decision{}, fmt.Errorf("tenant: %w", err)
		}
		s.limits[n], s.dims[n] = l.tenLimit, DimTenant
		n++
	}
	toolKey := ""
	if tool != "" && len(l.tools) > 0 {
		var td toolDim
		var ok bool
		if tool[0] != IdentityMarker {
			// Escaping is one-to-one (§6), so the raw name finds the tool
			// whose escaped name it escapes to, without escaping it.
			td, ok = l.rawTools[tool]
		} else {
			if s.esc, err = appendIdentity(s.esc[:0], tool); err != nil {
				return Decision{}, fmt.Errorf("tool: %w", err)
			}
			td, ok = l.tools[string(s.esc)]
		}
		if ok {
			toolKey = td.key
			s.limits[n], s.dims[n] = td.limit, DimTool
			n++
		}
	}
	if n == 0 {
		return Decision{Admitted: true, Dimension: DimNone}, nil
	}
	for i := 0; i < n; i++ {
		if s.dims[i] == DimTool {
			s.keys[i] = toolKey
		} else if l.borrow {
			s.keys[i] = unsafe.String(unsafe.SliceData(s.bufs[i]), len(s.bufs[i])) // #nosec G103 -- KeyBorrower backends keep no key after Evaluate; only this scratch holds the views, and it reads none after the call
		} else {
			s.keys[i] = string(s.bufs[i])
		}
	}

	// The views stay in s.keys until overwritten by the next call on this
	// scratch: nothing reads them, and they pin no memory the scratch does
	// not hold anyway (clearing them cost 3% of a hot-key request).
	admitted, err := l.backend.Evaluate(ctx, s.keys[:n], s.limits[:n], nowUS, s.out[:n])
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrBackend, err)
	}
	rep := Reported(admitted, s.out[:n])
	o := s.out[rep]
	d := Decision{
		Admitted:    admitted,
		Dimension:   s.dims[rep],
		Limit:       s.limits[rep].Limit,
		Remaining:   o.Remaining,
		ResetAtUnix: algorithms.CeilDiv(o.ResetAtUS, SecondUS),
	}
	if !admitted {
		d.RetryAfterS = max(1, algorithms.CeilDiv(o.RetryAfterUS, SecondUS))
	}
	return d, nil
}

// appendUserServer appends the user_per_server key segment (§6) to dst,
// whose first start bytes are the key prefix: "{" escape(user) "}:"
// escape(server), the hash tag on the user part so that a user's user and
// user_per_server keys share a Cluster slot; or, when the composed identity
// escape(user) ":" escape(server) is longer than MaxEscapedIdentity, "{~"
// and its SHA-256 hex "}". It does not allocate when dst has room.
func appendUserServer(dst []byte, start int, user, server string) ([]byte, error) {
	var err error
	if dst, err = appendIdentity(append(dst, '{'), user); err != nil {
		return dst, fmt.Errorf("user: %w", err)
	}
	userEnd := len(dst)
	if dst, err = appendIdentity(append(dst, '}', ':'), server); err != nil {
		return dst, fmt.Errorf("server: %w", err)
	}
	if composed := len(dst) - start - 2; composed > MaxEscapedIdentity {
		// Hash the composed identity (no braces): copy it after the segment,
		// contiguous, where the buffer has room.
		end := len(dst)
		dst = append(dst, dst[start+1:userEnd]...)
		dst = append(dst, dst[userEnd+1:end]...)
		sum := sha256.Sum256(dst[end:])
		dst = append(dst[:start], '{', '~')
		dst = hex.AppendEncode(dst, sum[:])
		dst = append(dst, '}')
	}
	return dst, nil
}

// Reported returns the index of the reported dimension among the outcomes of
// one request, given in the order user, user_per_server, tenant, tool (§4): when blocked, the
// refusing dimension with the largest retry time; when admitted, the one with
// the least remaining; ties go to the earliest.
func Reported(admitted bool, out []algorithms.Outcome) int {
	best := -1
	for i := range out {
		o := &out[i]
		switch {
		case admitted:
			if best < 0 || o.Remaining < out[best].Remaining {
				best = i
			}
		case !o.OK:
			if best < 0 || o.RetryAfterUS > out[best].RetryAfterUS {
				best = i
			}
		}
	}
	if best < 0 {
		// Blocked with every dimension ok cannot happen with a correct
		// backend; report the first rather than index out of range.
		best = 0
	}
	return best
}
