package redis

import "github.com/rate-limiter-go/rate_limiter_go/algorithms"

// parseReply checks a script reply against docs/semantics.md §9 and fills
// out[:n]: {admitted, now_us, then per key ok, remaining, reset_at_us,
// retry_after_us}. Anything that breaks the contract is a malformed reply
// (a script or server fault), reported as an error and never as a decision.
// out is only written when the whole reply is valid. It also returns the
// script's now_us.
func parseReply(v []int64, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (bool, int64, error) {
	admitted, err := checkReply(v, limits, nowUS, out)
	if err != nil {
		return false, 0, err
	}
	return admitted, v[1], nil
}

// checkReply is parseReply without the script's clock.
func checkReply(v []int64, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (bool, error) {
	n := len(limits)
	if len(v) != 2+4*n {
		return false, malformed("wrong length")
	}
	admitted, now := v[0], v[1]
	if admitted != 0 && admitted != 1 {
		return false, malformed("admitted flag not 0/1")
	}
	if now <= 0 || (nowUS != 0 && now != nowUS) {
		return false, malformed("now_us does not match")
	}
	allOK := true
	for i := 0; i < n; i++ {
		ok, remaining, reset, retry := v[2+4*i], v[3+4*i], v[4+4*i], v[5+4*i]
		if ok != 0 && ok != 1 {
			return false, malformed("ok flag not 0/1")
		}
		if remaining < 0 || remaining > limits[i].Limit {
			return false, malformed("remaining out of range")
		}
		if reset < now {
			return false, malformed("reset_at_us before now_us")
		}
		// §9: retry_after_us is 0 unless this key refused a blocked request,
		// and then it is positive (§3).
		refused := admitted == 0 && ok == 0
		if (refused && retry <= 0) || (!refused && retry != 0) {
			return false, malformed("retry_after_us inconsistent")
		}
		allOK = allOK && ok == 1
	}
	if allOK != (admitted == 1) {
		return false, malformed("admitted differs from the per-key flags")
	}
	for i := 0; i < n; i++ {
		out[i] = algorithms.Outcome{
			OK:           v[2+4*i] == 1,
			Remaining:    v[3+4*i],
			ResetAtUS:    v[4+4*i],
			RetryAfterUS: v[5+4*i],
		}
	}
	return admitted == 1, nil
}
