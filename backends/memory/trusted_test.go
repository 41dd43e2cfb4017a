package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// TestTrustedMatchesChecked: on arguments that pass EvaluateSegments' checks,
// EvaluateSegmentsTrusted answers exactly as it does, request after request
// (two stores fed the same random trace of 1 to 4 keys over a few
// segments, whole-prefix keys among them, limits low enough to refuse), and
// reads the store's clock for nowUS 0.
func TestTrustedMatchesChecked(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			checked, trusted := newStore(t, kind, 50), newStore(t, kind, 50)
			prefixes := []string{"a:", "b:", "c:", "tool:x"}
			var spaces [4]uint32
			for i, p := range prefixes {
				spaces[i] = checked.KeySpace(p)
				if got := trusted.KeySpace(p); got != spaces[i] {
					t.Fatalf("prefix ids differ: %d, %d", spaces[i], got)
				}
			}
			rng := rand.New(rand.NewPCG(1, uint64(kind)))
			now, refused := 1_000*sec, 0
			for step := 0; step < 3000; step++ {
				now += rng.Int64N(sec / 4)
				n := 1 + rng.IntN(4)
				sp, segs, limits := make([]uint32, n), make([]string, n), make([]algorithms.Limit, n)
				for i, d := range rng.Perm(4)[:n] { // distinct prefixes: no two keys alike
					sp[i], limits[i] = spaces[d], algorithms.Limit{Limit: int64(2 + d), WindowUS: int64(1+d) * sec}
					if d < 3 {
						segs[i] = fmt.Sprint("id", rng.IntN(5))
					}
				}
				want := make([]algorithms.Outcome, n)
				admitted, err := checked.EvaluateSegments(context.Background(), sp, segs, limits, now, want)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]algorithms.Outcome, n)
				if a := trusted.EvaluateSegmentsTrusted(sp, segs, limits, now, got); a != admitted || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("step %d: trusted %v %v, checked %v %v", step, a, got, admitted, want)
				}
				if !admitted {
					refused++
				}
			}
			if refused < 100 || refused > 2900 {
				t.Fatalf("%d of 3000 refused: the trace should mix admissions and refusals", refused)
			}
			trusted.now = func() int64 { return now + 42*sec }
			out := make([]algorithms.Outcome, 1)
			trusted.EvaluateSegmentsTrusted([]uint32{spaces[0]}, []string{"clock"}, []algorithms.Limit{{Limit: 1, WindowUS: 3600 * sec}}, 0, out)
			trusted.EvaluateSegmentsTrusted([]uint32{spaces[0]}, []string{"clock"}, []algorithms.Limit{{Limit: 1, WindowUS: 3600 * sec}}, 0, out)
			if out[0].OK || out[0].RetryAfterUS <= 0 || out[0].ResetAtUS <= now+42*sec {
				t.Fatalf("nowUS 0: %+v, want a refusal reset after the store's clock %d", out[0], now+42*sec)
			}
		})
	}
}
