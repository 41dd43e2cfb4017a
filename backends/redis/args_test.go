package redis

import (
	"reflect"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// deref turns the pointer arguments back into values for comparison.
func deref(args []interface{}) []interface{} {
	out := make([]interface{}, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case *string:
			out[i] = *v
		case *int64:
			out[i] = *v
		default:
			out[i] = v
		}
	}
	return out
}

func TestArgBufLayout(t *testing.T) {
	tests := []struct {
		name   string
		keys   []string
		limits []algorithms.Limit
		nowUS  int64
		want   []interface{}
	}{
		{"one key, Redis TIME", []string{"k1"}, []algorithms.Limit{{Limit: 3, WindowUS: 1_000_000}}, 0,
			[]interface{}{"evalsha", "sha", int64(1), "k1", "", int64(3), int64(1_000_000)}},
		{"three keys, explicit now", []string{"u", "t", "x"},
			[]algorithms.Limit{{Limit: 1, WindowUS: 2}, {Limit: 3, WindowUS: 4}, {Limit: 5, WindowUS: 6}},
			1_800_000_000_000_000,
			[]interface{}{"evalsha", "sha", int64(3), "u", "t", "x", int64(1_800_000_000_000_000),
				int64(1), int64(2), int64(3), int64(4), int64(5), int64(6)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a argBuf
			got := deref(a.fill("sha", tt.keys, tt.limits, tt.nowUS))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("args %v, want %v", got, tt.want)
			}
			a.reset()
			if a.keys[0] != "" || a.args[3] != nil {
				t.Error("reset kept references to the caller's keys")
			}
		})
	}
}

func TestArgBufFillDoesNotAllocate(t *testing.T) {
	keys := []string{"rl:fw:user:10/60:a", "rl:fw:tenant:10/60:b", "rl:fw:tool:10/60:c"}
	limits := []algorithms.Limit{{Limit: 10, WindowUS: 60_000_000}, {Limit: 10, WindowUS: 60_000_000},
		{Limit: 10, WindowUS: 60_000_000}}
	var sha interface{} = "0123456789abcdef0123456789abcdef01234567"
	allocs := testing.AllocsPerRun(1000, func() {
		buf := argPool.Get().(*argBuf)
		_ = buf.fill(sha, keys, limits, 1_800_000_000_000_000)
		buf.reset()
		argPool.Put(buf)
	})
	if allocs != 0 {
		t.Errorf("filling the arguments allocated %.1f times per call, want 0", allocs)
	}
}
