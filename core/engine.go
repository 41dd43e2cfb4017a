package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
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

// dimSpec is a configured identity dimension (user, user_per_server,
// tenant): its key prefix, that prefix's id in a SegmentedBackend, its limit.
type dimSpec struct {
	on     bool
	prefix string
	space  uint32
	limit  algorithms.Limit
}

// toolDim is a configured tool's precomputed key, the key's id in a
// SegmentedBackend (the whole key is the prefix, the segment is empty) and
// its limit.
type toolDim struct {
	key   string
	space uint32
	limit algorithms.Limit
}

// scratch is the per-call working memory of Evaluate, pooled so the hot path
// does not allocate.
type scratch struct {
	// segs[i] is dimension i's segment (SegmentedBackend): the escaped
	// identity (user, tenant), the composed "{user}:server" part of the key
	// (user_per_server), or "" (a tool, whose prefix is its whole key). A
	// segment is the identity itself or a view of bufs[i].
	segs    [MaxDimensions]string
	bufs    [MaxDimensions][]byte
	spaces  [MaxDimensions]uint32
	esc     []byte
	toolKey string                // the tool's whole key, when DimTool applies
	keyBufs [MaxDimensions][]byte // composed keys, for backends that take key strings
	keys    [MaxDimensions]string
	limits  [MaxDimensions]algorithms.Limit
	dims    [MaxDimensions]Dimension
	out     [MaxDimensions]algorithms.Outcome
}

// Limiter evaluates requests of one configuration against one backend. It is
// safe for concurrent use. It does not own the backend: closing the backend is
// the caller's business, since backends are shared (§10).
type Limiter struct {
	backend   Backend
	segmented SegmentedBackend // the backend, when it takes segments; else nil
	trusted   TrustingBackend  // the backend, when it has a trusted entry; else nil
	borrow    bool             // backend accepts key views into scratch buffers
	user      dimSpec
	userSrv   dimSpec
	tenant    dimSpec
	tools     map[string]*toolDim // escaped tool name -> key and limit
	rawTools  map[string]*toolDim // configured tool name -> key and limit
	// fewTools holds rawTools as a list when it has at most scanTools
	// entries (else nil), sorted by name so that the order does not depend
	// on map iteration.
	fewTools []namedTool
	pool     sync.Pool
}

// scanTools is the most configured tools looked up by scanning a list
// rather than the rawTools map: for a few names, comparing lengths and then
// bytes costs less than hashing the name and probing the map (callgrind,
// bench/results/issue13-core/instructions-s7.txt).
const scanTools = 4

// namedTool is a configured tool's name with its key and limit.
type namedTool struct {
	name string
	toolDim
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
	l := &Limiter{backend: backend, tools: make(map[string]*toolDim, len(cfg.ByTool)),
		rawTools: make(map[string]*toolDim, len(cfg.ByTool))}
	if b, ok := backend.(KeyBorrower); ok {
		l.borrow = b.BorrowsKeys()
	}
	l.segmented, _ = backend.(SegmentedBackend)
	l.trusted, _ = backend.(TrustingBackend)
	space := func(prefix string) uint32 {
		if l.segmented == nil {
			return 0
		}
		return l.segmented.KeySpace(prefix)
	}
	// The trusted entry's rules (TrustingBackend), for a Config that did
	// not come from ParseConfig; the engine keeps the others itself.
	limits := []*algorithms.Limit{cfg.ByUser, cfg.ByUserPerServer, cfg.ByTenant}
	for _, lim := range cfg.ByTool {
		limits = append(limits, &lim)
	}
	for _, lim := range limits {
		if lim != nil && (lim.Limit < 1 || lim.WindowUS < 1) {
			return nil, fmt.Errorf("%w: limit %d per %d µs", ErrConfig, lim.Limit, lim.WindowUS)
		}
	}
	spec := func(d Dimension, lim *algorithms.Limit) dimSpec {
		if lim == nil {
			return dimSpec{}
		}
		prefix := keyPrefix(cfg.KeyPrefix, tag, d.String(), lim.Limit, lim.WindowUS)
		return dimSpec{on: true, prefix: prefix, space: space(prefix), limit: *lim}
	}
	l.user = spec(DimUser, cfg.ByUser)
	l.userSrv = spec(DimUserPerServer, cfg.ByUserPerServer)
	l.tenant = spec(DimTenant, cfg.ByTenant)
	for name, lim := range cfg.ByTool {
		esc := EscapeIdentity(name)
		key := keyPrefix(cfg.KeyPrefix, tag, DimTool.String(), lim.Limit, lim.WindowUS) + "{" + esc + "}"
		l.tools[esc] = &toolDim{key: key, space: space(key), limit: lim}
		l.rawTools[name] = l.tools[esc]
	}
	if len(l.rawTools) <= scanTools {
		for name, td := range l.rawTools {
			l.fewTools = append(l.fewTools, namedTool{name: name, toolDim: *td})
		}
		slices.SortFunc(l.fewTools, func(a, b namedTool) int { return strings.Compare(a.name, b.name) })
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
// ErrBadArgument (nothing was evaluated) or ErrBackend. The identities may be
// views of memory that is reused once Evaluate returns (pyext passes views
// of Python's strings): nothing keeps them beyond the call, only copies.
func (l *Limiter) Evaluate(ctx context.Context, r Request) (Decision, error) {
	nowUS := r.NowUS
	if !r.acceptable() {
		return Decision{}, r.badArgument()
	}
	// The scratch goes back to the pool on every return below, without a
	// defer (a defer costs more than the Put); a panic loses one scratch to
	// the collector, which the pool replaces.
	s := l.pool.Get().(*scratch)
	n, err := l.dimensions(s, &r)
	if err != nil {
		l.pool.Put(s)
		return Decision{}, err
	}
	if n == 0 {
		l.pool.Put(s)
		return Decision{Admitted: true, Dimension: DimNone}, nil
	}
	var admitted bool
	switch {
	case l.trusted != nil:
		// What the trusted entry takes unchecked holds by construction: n
		// is 1..MaxDimensions, the limits were checked by NewLimiter, nowUS
		// by acceptable, and the keys of one request have distinct prefixes
		// (one per dimension or tool), so no two are alike.
		admitted = l.trusted.EvaluateSegmentsTrusted(s.spaces[:n], s.segs[:n], s.limits[:n], nowUS, s.out[:n])
	case l.segmented != nil:
		admitted, err = l.segmented.EvaluateSegments(ctx, s.spaces[:n], s.segs[:n], s.limits[:n], nowUS, s.out[:n])
	default:
		l.composeKeys(s, n)
		admitted, err = l.backend.Evaluate(ctx, s.keys[:n], s.limits[:n], nowUS, s.out[:n])
	}
	// The segment and key views stay in s until overwritten by the next
	// call on this scratch: nothing reads them, and they pin no memory the
	// scratch does not hold anyway.
	if err != nil {
		l.pool.Put(s)
		return Decision{}, fmt.Errorf("%w: %w", ErrBackend, err)
	}
	d := s.decision(admitted, n)
	l.pool.Put(s)
	return d, nil
}

// EvaluateLocal is Evaluate for a request that needs no I/O: one to which no
// dimension applies, or one the backend refuses from what it holds in
// process (LocalAnswerer, docs/semantics.md §12). It returns ok false, having
// evaluated nothing, when the request needs Evaluate; errors as Evaluate's,
// ErrBadArgument only.
func (l *Limiter) EvaluateLocal(r Request) (d Decision, ok bool, err error) {
	if !r.acceptable() {
		return Decision{}, false, r.badArgument()
	}
	s := l.pool.Get().(*scratch)
	defer l.pool.Put(s)
	n, err := l.dimensions(s, &r)
	if err != nil {
		return Decision{}, false, err
	}
	if n == 0 {
		return Decision{Admitted: true, Dimension: DimNone}, true, nil
	}
	la, isLocal := l.backend.(LocalAnswerer)
	if !isLocal {
		return Decision{}, false, nil
	}
	l.composeKeys(s, n)
	if !la.AnswerLocally(s.keys[:n], s.limits[:n], r.NowUS, s.out[:n]) {
		return Decision{}, false, nil
	}
	return s.decision(false, n), true, nil
}

// acceptable reports whether a backend may see r: its time in range and a
// user. Small enough to inline into the hot path; badArgument says why not.
func (r *Request) acceptable() bool {
	return r.NowUS >= 0 && r.NowUS <= MaxNowUS && r.User != ""
}

// badArgument is the ErrBadArgument of a request that is not acceptable.
func (r *Request) badArgument() error {
	if r.User == "" {
		// Required even when no user limit is configured: the caller
		// normalises an unknown user to "anonymous" (§5).
		return fmt.Errorf("%w: empty user", ErrBadArgument)
	}
	return fmt.Errorf("%w: now_us %d outside 0..2^52", ErrBadArgument, r.NowUS)
}

// decision is the Decision of the first n outcomes in s: the reported
// dimension's (§4, §7).
func (s *scratch) decision(admitted bool, n int) Decision {
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
	return d
}

// dimensions fills s with the dimensions of r that apply (§5), in the order
// user, user_per_server, tenant, tool, and returns how many.
func (l *Limiter) dimensions(s *scratch, r *Request) (int, error) {
	n := 0
	var err error
	if l.user.on {
		if s.segs[n], err = s.segment(n, r.User); err != nil {
			return 0, fmt.Errorf("user: %w", err)
		}
		s.put(n, &l.user, DimUser)
		n++
	}
	if l.userSrv.on && r.Server != "" {
		if s.bufs[n], err = appendUserServer(s.bufs[n][:0], 0, r.User, r.Server); err != nil {
			return 0, fmt.Errorf("user_per_server: %w", err)
		}
		s.segs[n] = view(s.bufs[n])
		s.put(n, &l.userSrv, DimUserPerServer)
		n++
	}
	if l.tenant.on && r.Tenant != "" {
		if s.segs[n], err = s.segment(n, r.Tenant); err != nil {
			return 0, fmt.Errorf("tenant: %w", err)
		}
		s.put(n, &l.tenant, DimTenant)
		n++
	}
	if tool := r.Tool; tool != "" && len(l.tools) > 0 {
		var td *toolDim
		if tool[0] != IdentityMarker {
			// Escaping is one-to-one (§6), so the raw name finds the tool
			// whose escaped name it escapes to, without escaping it.
			td = l.rawTool(tool)
		} else {
			if s.esc, err = appendIdentity(s.esc[:0], tool); err != nil {
				return 0, fmt.Errorf("tool: %w", err)
			}
			td = l.tools[string(s.esc)]
		}
		if td != nil {
			s.segs[n], s.toolKey, s.spaces[n] = "", td.key, td.space
			s.limits[n], s.dims[n] = td.limit, DimTool
			n++
		}
	}
	return n, nil
}

// rawTool returns the configured tool named name (unescaped), or nil.
func (l *Limiter) rawTool(name string) *toolDim {
	if l.fewTools == nil {
		return l.rawTools[name]
	}
	for i := range l.fewTools {
		if t := &l.fewTools[i]; t.name == name { // == compares lengths first
			return &t.toolDim
		}
	}
	return nil
}

// put records dimension slot i's prefix id, limit and kind from d.
func (s *scratch) put(i int, d *dimSpec, dim Dimension) {
	s.spaces[i], s.limits[i], s.dims[i] = d.space, d.limit, dim
}

// segment returns an identity's key component (§6) as received from the
// binding: the identity itself when it needs no escaping (the common case:
// no copy), else its escaped or hashed form in bufs[i]. Distinct keys have
// distinct components, so the component is the segment.
func (s *scratch) segment(i int, id string) (string, error) {
	if isPlain(id) {
		return id, nil
	}
	var err error
	if s.bufs[i], err = appendIdentity(s.bufs[i][:0], id); err != nil {
		return "", err
	}
	return view(s.bufs[i]), nil
}

// composeKeys writes the key strings of the first n slots into s.keys (§6),
// for a backend that is not a SegmentedBackend.
func (l *Limiter) composeKeys(s *scratch, n int) {
	for i := 0; i < n; i++ {
		prefix, tagged := l.user.prefix, true
		switch s.dims[i] {
		case DimUserPerServer:
			prefix, tagged = l.userSrv.prefix, false // the segment is "{user}:server" already
		case DimTenant:
			prefix = l.tenant.prefix
		case DimTool:
			s.keys[i] = s.toolKey // the prefix is its whole key
			continue
		}
		b := append(s.keyBufs[i][:0], prefix...)
		if tagged {
			b = append(append(append(b, '{'), s.segs[i]...), '}')
		} else {
			b = append(b, s.segs[i]...)
		}
		s.keyBufs[i] = b
		if l.borrow {
			s.keys[i] = view(b)
		} else {
			s.keys[i] = string(b)
		}
	}
}

// view returns b's bytes as a string without copying; b must not change
// while the string is in use.
func view(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b)) // #nosec G103 -- views live in the scratch for one Evaluate call; backends copy what they keep (KeyBorrower, SegmentedBackend)
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
	best := 0
	if admitted {
		for i := 1; i < len(out); i++ {
			if out[i].Remaining < out[best].Remaining {
				best = i
			}
		}
		return best
	}
	best = -1
	for i := range out {
		if !out[i].OK && (best < 0 || out[i].RetryAfterUS > out[best].RetryAfterUS) {
			best = i
		}
	}
	// Blocked with every dimension ok cannot happen with a correct backend;
	// report the first rather than index out of range.
	return max(best, 0)
}
