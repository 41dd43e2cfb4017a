package pyext

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

const sec = int64(1_000_000)

// now is a realistic instant aligned to every window.
const now = 1_800_000_000 * sec

func cfgJSON(extra string) string {
	return `{"algorithm":"fixed_window","backend":"memory","by_user":{"limit":2,"window_s":60},` +
		`"by_tenant":{"limit":5,"window_s":1},"by_tool":{"search":{"limit":3,"window_s":3600}}` + extra + `}`
}

func newLimiter(t *testing.T, name, cfg string) int64 {
	t.Helper()
	h, err := NewLimiter(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if h < 1 {
		t.Fatalf("handle %d", h)
	}
	t.Cleanup(func() { CloseLimiter(h) })
	return h
}

type unpacked struct {
	admitted     bool
	dim          int64
	value, reset int64
}

func unpack(p int64) unpacked {
	return unpacked{p&1 == 1, p >> 1 & 7, p >> 4 & (1<<21 - 1), p >> 25}
}

func TestPackLayout(t *testing.T) {
	tests := []struct {
		d    limiter.Decision
		want unpacked
	}{
		{limiter.Decision{Admitted: true, Dimension: limiter.DimNone}, unpacked{true, 4, 0, 0}},
		{limiter.Decision{Admitted: true, Dimension: limiter.DimUser, Limit: 9, Remaining: 1_000_000, ResetAtUnix: 1_800_000_060},
			unpacked{true, 0, 1_000_000, 1_800_000_060}},
		{limiter.Decision{Admitted: false, Dimension: limiter.DimTool, Limit: 3, ResetAtUnix: 1<<38 - 1, RetryAfterS: 3600},
			unpacked{false, 3, 3600, 1<<38 - 1}},
		{limiter.Decision{Admitted: false, Dimension: limiter.DimTenant, RetryAfterS: 1, ResetAtUnix: 7}, unpacked{false, 2, 1, 7}},
		{limiter.Decision{Admitted: true, Dimension: limiter.DimUserPerServer, Remaining: 5, ResetAtUnix: 9},
			unpacked{true, 1, 5, 9}},
		// Out-of-range values saturate instead of corrupting neighbouring fields.
		{limiter.Decision{Admitted: true, Dimension: limiter.DimUser, Remaining: 1 << 22, ResetAtUnix: 1 << 40},
			unpacked{true, 0, 1<<21 - 1, 1<<38 - 1}},
	}
	for _, tt := range tests {
		p := pack(tt.d)
		if p < 0 {
			t.Errorf("pack(%+v) = %d is negative", tt.d, p)
		}
		if got := unpack(p); got != tt.want {
			t.Errorf("pack(%+v) unpacks to %+v, want %+v", tt.d, got, tt.want)
		}
	}
	if pack(limiter.Decision{Admitted: true, Dimension: limiter.DimNone}) != 9 {
		t.Error("the no-dimension result must be 9, which engine_go.py relies on")
	}
}

func TestEvaluatePacked(t *testing.T) {
	h := newLimiter(t, t.Name(), cfgJSON(`,"by_user_per_server":{"limit":1,"window_s":1}`))
	steps := []struct {
		user, server, tenant, tool string
		want                       unpacked
	}{
		{"alice", "", "", "", unpacked{true, 0, 1, 1_800_000_060}},
		{"alice", "", "t1", "search", unpacked{true, 0, 0, 1_800_000_060}}, // user 0, tenant 4, tool 2
		{"alice", "", "t1", "search", unpacked{false, 0, 60, 1_800_000_060}},
		{"bob", "", "t1", "search", unpacked{true, 0, 1, 1_800_000_060}},   // user 1, tenant 3, tool 1: tie, user first
		{"carol", "", "t1", "search", unpacked{true, 3, 0, 1_800_003_600}}, // user 1, tenant 2, tool 0
		{"bob", "", "", "other", unpacked{true, 0, 0, 1_800_000_060}},
		{"dave", "s1", "", "", unpacked{true, 1, 0, 1_800_000_001}}, // user 1, user_per_server 0
		{"dave", "s1", "", "", unpacked{false, 1, 1, 1_800_000_001}},
		{"dave", "s2", "", "", unpacked{true, 0, 0, 1_800_000_060}}, // another server: user 0, tie with s2, user first
	}
	for i, st := range steps {
		p := Evaluate(h, st.user, st.server, st.tenant, st.tool, now)
		if p < 0 {
			t.Fatalf("step %d: code %d", i, p)
		}
		if got := unpack(p); got != st.want {
			t.Fatalf("step %d: %+v, want %+v", i, got, st.want)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	h := newLimiter(t, t.Name(), cfgJSON(""))
	tests := []struct {
		name               string
		handle             int64
		user, tenant, tool string
		nowUS              int64
		want               int64
	}{
		{"handle 0", 0, "u", "", "", now, CodeUnknownHandle},
		{"unknown handle", 1 << 40, "u", "", "", now, CodeUnknownHandle},
		{"negative handle", -1, "u", "", "", now, CodeUnknownHandle},
		{"negative time", h, "u", "", "", -1, CodeBadArgument},
		{"empty user", h, "", "", "", now, CodeBadArgument},
		{"bad marked identity", h, "\x01a:b", "", "", now, CodeBadArgument},
	}
	for _, tt := range tests {
		if got := Evaluate(tt.handle, tt.user, "", tt.tenant, tt.tool, tt.nowUS); got != tt.want {
			t.Errorf("%s: Evaluate = %d, want %d", tt.name, got, tt.want)
		}
	}
	CloseLimiter(h)
	if got := Evaluate(h, "u", "", "", "", now); got != CodeUnknownHandle {
		t.Errorf("after CloseLimiter: %d, want %d", got, CodeUnknownHandle)
	}
	CloseLimiter(h) // twice: ignored
}

// TestHandleTable: handles are distinct and increasing, each finds its own
// limiter until removed, removing twice or an unknown handle is a no-op, and
// reads run concurrently with additions and removals (run with -race).
func TestHandleTable(t *testing.T) {
	// named values compare by id (panicky values are all equal).
	type named struct {
		panicky
		id int
	}
	var tb table
	a, b := named{id: 1}, named{id: 2}
	ha, hb := tb.add(a), tb.add(b)
	if ha != 1 || hb != 2 {
		t.Fatalf("handles %d, %d, want 1, 2", ha, hb)
	}
	if tb.get(ha) != evaluator(a) || tb.get(hb) != evaluator(b) {
		t.Fatal("a handle does not find its limiter")
	}
	for _, h := range []int64{0, -1, 3, 1 << 40} {
		if tb.get(h) != nil || tb.remove(h) != nil {
			t.Fatalf("handle %d: found a limiter", h)
		}
	}
	if tb.remove(ha) != evaluator(a) || tb.remove(ha) != nil || tb.get(ha) != nil {
		t.Fatal("remove: want the limiter once, then nothing")
	}
	if tb.get(hb) != evaluator(b) {
		t.Fatal("removing one handle lost another")
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			tb.remove(tb.add(named{id: 3 + i}))
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			if tb.get(hb) != evaluator(b) {
				t.Error("a concurrent add or remove hid a live handle")
				return
			}
		}
	}()
	wg.Wait()
}

func TestNewLimiterErrors(t *testing.T) {
	for _, cfg := range []string{
		`{`, `{"algorithm":"x"}`, `{"backend":"redis"}`, `{"backend":"redis","redis_url":"ftp://x"}`,
		// The TLS files reach the Redis backend, which loads them at creation.
		`{"backend":"redis","redis_url":"rediss://127.0.0.1:1/0","redis_tls_ca_file":"/nonexistent/ca.pem"}`,
	} {
		h, err := NewLimiter("n", cfg)
		if err == nil || h != 0 {
			t.Errorf("NewLimiter(%s) = %d, %v; want an error", cfg, h, err)
		}
	}
}

// TestSharedState: limiters with the same name and configuration share one
// memory store (§10); another name or configuration does not.
func TestSharedState(t *testing.T) {
	t.Cleanup(ResetMemoryStores)
	cfg := cfgJSON("")
	a := newLimiter(t, "shared", cfg)
	b := newLimiter(t, "shared", cfg)
	other := newLimiter(t, "other", cfg)
	Evaluate(a, "u", "", "", "", now)
	if got := unpack(Evaluate(b, "u", "", "", "", now)); got.value != 0 {
		t.Fatalf("second limiter of the pair sees remaining %d, want 0 (shared)", got.value)
	}
	if got := unpack(Evaluate(other, "u", "", "", "", now)); got.value != 1 {
		t.Fatalf("another name sees remaining %d, want 1 (separate)", got.value)
	}
	ResetMemoryStores()
	fresh := newLimiter(t, "shared", cfg)
	if got := unpack(Evaluate(fresh, "u", "", "", "", now)); got.value != 1 {
		t.Fatalf("after ResetMemoryStores remaining %d, want 1", got.value)
	}
}

// readEventFD waits until the eventfd counts at least one completion.
func readEventFD(t *testing.T, fd int) uint64 {
	t.Helper()
	var buf [8]byte
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := unix.Read(fd, buf[:])
		if err == nil && n == 8 {
			return binary.NativeEndian.Uint64(buf[:])
		}
		if !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("read eventfd: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no completion signalled within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSubmitCompletes(t *testing.T) {
	h := newLimiter(t, t.Name(), cfgJSON(""))
	fd := CompletionFD()
	if fd < 0 || CompletionFD() != fd {
		t.Fatalf("CompletionFD %d not stable", fd)
	}
	const n = 50
	tickets := map[int64]bool{}
	for i := 0; i < n; i++ {
		tk := Submit(h, fmt.Sprintf("user%d", i%10), "", "", "", now)
		if tk > MaxTicket || tickets[tk] {
			t.Fatalf("ticket %d", tk)
		}
		tickets[tk] = true
	}
	if bad := Submit(1<<40, "u", "", "", "", now); bad != CodeUnknownHandle {
		t.Fatalf("Submit on unknown handle: %d", bad)
	}
	// Answered at once, without a ticket: nothing to wait for.
	if bad := Submit(h, "", "", "", "", now); bad != CodeBadArgument {
		t.Fatalf("Submit of an empty user: %d, want CodeBadArgument", bad)
	}
	noLimits := newLimiter(t, t.Name()+"/tools", `{"algorithm":"fixed_window","backend":"memory","by_tool":{"search":{"limit":1,"window_s":1}}}`)
	if got := Submit(noLimits, "u", "", "", "other", now); got != 9 {
		t.Fatalf("Submit of a request no dimension applies to = %d, want the packed no-limit result 9", got)
	}
	admitted := 0
	for got := 0; got < n; {
		readEventFD(t, int(fd))
		for tk := NextCompletion(); tk != 0; tk = NextCompletion() {
			if !tickets[tk] {
				t.Fatalf("unknown or repeated ticket %d", tk)
			}
			delete(tickets, tk)
			p := TakeResult(tk)
			if p < 0 {
				t.Fatalf("ticket %d: code %d", tk, p)
			}
			if p&1 == 1 {
				admitted++
			}
			if again := TakeResult(tk); again != CodeBadArgument {
				t.Fatalf("result taken twice: %d", again)
			}
			got++
		}
	}
	if admitted != 20 { // 10 users x limit 2
		t.Fatalf("admitted %d, want 20", admitted)
	}
}

// panicky is a limiter that panics, standing in for an engine bug.
type panicky struct{}

func (panicky) Evaluate(context.Context, limiter.Request) (limiter.Decision, error) { panic("bug") }
func (panicky) Close()                                                              {}
func (panicky) EvaluateLocal(limiter.Request) (limiter.Decision, bool, error) {
	return limiter.Decision{}, false, nil // so that Submit's goroutine meets the panic
}

func TestPanicsAreRecovered(t *testing.T) {
	h := handles.add(panicky{})
	defer CloseLimiter(h)
	before := PanicCount()
	if got := Evaluate(h, "u", "", "", "", now); got != CodeInternal {
		t.Fatalf("Evaluate = %d, want CodeInternal", got)
	}
	if got := awaitTicket(t, Submit(h, "u", "", "", "", now)); got != CodeInternal {
		t.Fatalf("Submit result = %d, want CodeInternal", got)
	}
	if PanicCount()-before != 2 {
		t.Fatalf("PanicCount grew by %d, want 2", PanicCount()-before)
	}
}

func TestCodes(t *testing.T) {
	tests := []struct {
		err  error
		want int64
	}{
		{errors.New("something else"), CodeInternal},
	}
	for _, tt := range tests {
		if got := code(tt.err); got != tt.want {
			t.Errorf("code(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
	// A Redis nobody listens on: the backend is unavailable (§8).
	h := newLimiter(t, t.Name(), `{"backend":"redis","redis_url":"redis://127.0.0.1:1/0",`+
		`"by_user":{"limit":1,"window_s":1},"redis_connect_timeout_ms":20}`)
	if got := Evaluate(h, "u", "", "", "", now); got != CodeUnavailable {
		t.Errorf("Evaluate on a closed Redis port = %d, want CodeUnavailable", got)
	}
	if !strings.HasPrefix(fmt.Sprint(ABIVersion()), "5") {
		t.Error("ABIVersion changed: update engine_go.ABI_VERSION too")
	}
}

// TestCompletionQueueStaysCompact: a queue that is never empty while it is
// drained (sustained load) does not keep the consumed tickets.
func TestCompletionQueueStaysCompact(t *testing.T) {
	c := completions{fd: -1, results: map[int64]int64{}}
	next := int64(0)
	push := func() {
		next++
		c.mu.Lock()
		c.done = append(c.done, next)
		c.mu.Unlock()
	}
	push()
	want := int64(1)
	for i := 0; i < 100_000; i++ {
		push()
		if got := c.pop(); got != want {
			t.Fatalf("popped %d, want %d (FIFO)", got, want)
		}
		want++
	}
	if len(c.done)-c.head != 1 || cap(c.done) > 4096 {
		t.Fatalf("queue holds %d slots (cap %d) for 1 pending ticket", len(c.done), cap(c.done))
	}
}

// TestEvaluateKeepsNoViewOfItsIdentities: the extension's evaluate_fast
// passes identities as views of Python's buffers, valid only during the call
// (tools/build/fastpath). Overwriting a view's bytes after the call must not
// move or rename any counter, whatever the dimension.
func TestEvaluateKeepsNoViewOfItsIdentities(t *testing.T) {
	h := newLimiter(t, "views", cfgJSON(""))
	view := func(b []byte) string { return unsafe.String(&b[0], len(b)) }
	user, tenant, tool := []byte("alice"), []byte("team-a"), []byte("search")
	for i := range 2 { // the user limit is 2 per minute
		if p := unpack(Evaluate(h, view(user), "", view(tenant), view(tool), now)); !p.admitted {
			t.Fatalf("call %d: refused %+v", i, p)
		}
	}
	copy(user, "bobby")
	copy(tenant, "team-b")
	copy(tool, "xxxxxx")
	if p := unpack(Evaluate(h, "alice", "", "", "", now)); p.admitted {
		t.Errorf("alice after her views were overwritten: admitted %+v, want refused (her counter moved)", p)
	}
	// The tool counter stayed "search": its third request of 3 per hour leaves 0.
	if p := unpack(Evaluate(h, "bobby", "", "team-a", "search", now)); !p.admitted || p.dim != int64(limiter.DimTool) || p.value != 0 {
		t.Errorf("bobby on search: %+v, want admitted with the tool's remaining 0", p)
	}
}

// TestEvaluateAllocations: a hot-key request through the binding's Go side
// allocates no more than the limiter itself does.
func TestEvaluateAllocations(t *testing.T) {
	h := newLimiter(t, "allocs", `{"algorithm":"fixed_window","backend":"memory","by_user":{"limit":1000000,"window_s":3600},`+
		`"by_tenant":{"limit":1000000,"window_s":3600},"by_tool":{"search":{"limit":1000000,"window_s":3600}}}`)
	l := handles.get(h)
	req := limiter.Request{User: "alice@example.com", Tenant: "team-a", Tool: "search", NowUS: now}
	core := testing.AllocsPerRun(200, func() { _, _ = l.Evaluate(context.Background(), req) })
	binding := testing.AllocsPerRun(200, func() { Evaluate(h, req.User, "", req.Tenant, req.Tool, now) })
	if binding > core {
		t.Errorf("Evaluate: %v allocations per request, the limiter alone %v", binding, core)
	}
}

// awaitTicket drains completions until tk's result shows up and returns it.
// Each drain empties the queue, as the Python bridge does: a completion left
// queued after the eventfd was read would not signal it again. The results
// of other tickets (earlier tests') are dropped.
func awaitTicket(t *testing.T, tk int64) int64 {
	t.Helper()
	got, found := int64(0), false
	for !found {
		readEventFD(t, int(CompletionFD()))
		for c := NextCompletion(); c != 0; c = NextCompletion() {
			if r := TakeResult(c); c == tk {
				got, found = r, true
			}
		}
	}
	return got
}

// TestSubmitAnswersRememberedRefusalsAtOnce: on Redis, Submit returns a
// remembered refusal (docs/semantics.md §12) as a packed result, with no
// ticket and no Redis command, and it is the answer the goroutine would
// have given at the same instant; a request Redis must see still gets a
// ticket.
func TestSubmitAnswersRememberedRefusalsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	for _, algorithm := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algorithm, func(t *testing.T) {
			cfg := func(blockedMaxKeys int) string {
				return fmt.Sprintf(`{"algorithm":%q,"backend":"redis","redis_url":%q,"redis_key_prefix":%q,`+
					`"by_user":{"limit":2,"window_s":60},"redis_blocked_max_keys":%d}`,
					algorithm, srv.URL(), fmt.Sprintf("rl%d.%s", blockedMaxKeys, algorithm), blockedMaxKeys)
			}
			h, off := newLimiter(t, t.Name(), cfg(100)), newLimiter(t, t.Name()+"/off", cfg(0))
			// A minute's start ahead of Redis's clock, so that the state outlives the test
			// and the requests below (at most 9 s later) stay in one fixed window.
			at := (time.Now().UnixMicro()/(60*sec) + 5) * 60 * sec
			for i, want := range []bool{true, true, false} {
				for _, lim := range []int64{h, off} {
					tk := Submit(lim, "alice", "", "", "", at+int64(i))
					if tk > MaxTicket {
						t.Fatalf("request %d: Submit = %d before any refusal, want a ticket", i, tk)
					}
					if got := unpack(awaitTicket(t, tk)); got.admitted != want {
						t.Fatalf("request %d: admitted %v, want %v", i, got.admitted, want)
					}
				}
			}
			// Redis refused alice at at+2: later requests within the wait are answered now.
			calls := scriptCalls(t, srv)
			for i := int64(3); i < 10; i++ {
				local := Submit(h, "alice", "", "", "", at+i*sec)
				if local < 0 {
					t.Fatalf("request at +%d s: Submit = %d, want a packed refusal", i, local)
				}
				tk := Submit(off, "alice", "", "", "", at+i*sec)
				if tk > MaxTicket {
					t.Fatalf("local refusals off: Submit = %d, want a ticket", tk)
				}
				if remote := awaitTicket(t, tk); local != remote {
					t.Fatalf("request at +%d s: local answer %+v, Redis's %+v", i, unpack(local), unpack(remote))
				}
			}
			// Only the 7 requests of the limiter without local refusals reached Redis.
			if got := scriptCalls(t, srv) - calls; got != 7 {
				t.Fatalf("%d script calls for 7 remote and 7 local requests, want 7", got)
			}
			if tk := Submit(h, "bob", "", "", "", at); tk > MaxTicket {
				t.Fatalf("a user never refused: Submit = %d, want a ticket", tk)
			} else if got := unpack(awaitTicket(t, tk)); !got.admitted {
				t.Fatalf("bob refused: %+v", got)
			}
		})
	}
}

// scriptCalls is the number of script calls (EVAL, EVALSHA) srv has
// executed: one per request that reached Redis.
func scriptCalls(t *testing.T, srv *redistest.Server) int64 {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(line, ":calls=")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		var calls int64
		if _, err := fmt.Sscanf(rest, "%d", &calls); err != nil {
			t.Fatalf("INFO commandstats line %q: %v", line, err)
		}
		n += calls
	}
	return n
}

// TestSubmitDetachesItsIdentities: Submit's goroutine outlives the call, and
// submit_fast passes views of Python's buffers, so the goroutine must get
// copies that share no byte with what it was given.
func TestSubmitDetachesItsIdentities(t *testing.T) {
	tests := [][4]string{
		{"alice", "srv", "acme", "search"},
		{"alice", "", "", ""},
		{"u", "", "t", ""},
		{"\x01a%00b", "s", "", "x"},
	}
	for _, in := range tests {
		u, s, tn, tl := detach(in[0], in[1], in[2], in[3])
		if got := [4]string{u, s, tn, tl}; got != in {
			t.Fatalf("detach(%q) = %q", in, got)
		}
		for i, c := range [4]string{u, s, tn, tl} {
			if len(c) > 0 && unsafe.StringData(c) == unsafe.StringData(in[i]) {
				t.Fatalf("detach(%q): identity %d shares memory with its input", in, i)
			}
		}
	}
}
