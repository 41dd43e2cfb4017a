package redis

import (
	"sync"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// maxKeys is the most dimensions one request has: user, user_per_server,
// tenant, tool (§9).
const maxKeys = 4

// argBuf holds the EVALSHA arguments of one call. go-redis writes *string and
// *int64 arguments without converting them to interface values of their own,
// so filling a pooled argBuf allocates nothing.
type argBuf struct {
	keys [maxKeys]string
	nums [1 + 2*maxKeys]int64 // now_us, then limit and window_us per key
	args [3 + maxKeys + 1 + 2*maxKeys]interface{}
}

var argPool = sync.Pool{New: func() any { return new(argBuf) }}

// emptyArg is ARGV[1] when Redis TIME is the clock. A constant string in an
// interface does not allocate.
const emptyArg = ""

// fill lays out "EVALSHA sha numkeys KEYS... ARGV..." for the §9 calling
// convention and returns the argument slice. nowUS == 0 sends "" so that the
// script reads Redis TIME.
func (a *argBuf) fill(sha interface{}, keys []string, limits []algorithms.Limit, nowUS int64) []interface{} {
	n := len(keys)
	a.args[0] = "evalsha"
	a.args[1] = sha
	a.args[2] = int64(n) // 1..4: small integers are boxed without allocating
	for i := 0; i < n; i++ {
		a.keys[i] = keys[i]
		a.args[3+i] = &a.keys[i]
	}
	j := 3 + n
	if nowUS == 0 {
		a.args[j] = emptyArg
	} else {
		a.nums[0] = nowUS
		a.args[j] = &a.nums[0]
	}
	j++
	for i := 0; i < n; i++ {
		a.nums[1+2*i] = limits[i].Limit
		a.nums[2+2*i] = limits[i].WindowUS
		a.args[j] = &a.nums[1+2*i]
		a.args[j+1] = &a.nums[2+2*i]
		j += 2
	}
	return a.args[:j]
}

// reset drops references to the caller's strings before the buffer is pooled.
func (a *argBuf) reset() {
	a.keys = [maxKeys]string{}
	a.args = [len(a.args)]interface{}{}
}
