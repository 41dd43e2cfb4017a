package algorithms

// CeilDiv returns the least q with q*b >= a, for a >= 0 and b > 0
// (docs/semantics.md §2).
func CeilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}
