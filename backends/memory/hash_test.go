package memory

import (
	"strconv"
	"testing"
)

// TestKeyHashCoversEveryByte checks, for every segment length up to 70 (all
// the read paths: 1-3, 4-7, 8-16 and 16-byte blocks with an overlapping
// tail), that changing any one byte, the length or the prefix id changes the
// hash.
func TestKeyHashCoversEveryByte(t *testing.T) {
	h := newKeyHash()
	for n := 0; n <= 70; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i%26)
		}
		k := keyID{space: 3, seg: string(b)}
		base := h.sum(k)
		if h.sum(keyID{space: 4, seg: k.seg}) == base {
			t.Fatalf("len %d: prefix id 3 and 4 hash alike", n)
		}
		if h.sum(keyID{space: 3, seg: k.seg + "\x00"}) == base {
			t.Fatalf("len %d: appending a NUL byte left the hash unchanged", n)
		}
		for i := 0; i < n; i++ {
			c := append([]byte(nil), b...)
			c[i] ^= 0x40
			if h.sum(keyID{space: 3, seg: string(c)}) == base {
				t.Fatalf("len %d: byte %d changed, hash did not", n, i)
			}
		}
	}
}

// TestKeyHashSpreads hashes 200,000 similar keys (a counter in a common
// e-mail form, under two prefix ids): no two may share a 64-bit hash, the
// 10 bits above the lowest 7 (xsync's bucket index in a table of 1,024;
// the lowest 7 are its in-bucket tag) and the store's cache index must be
// near uniform, and so must every bit.
func TestKeyHashSpreads(t *testing.T) {
	h := newKeyHash()
	seen := make(map[uint64]keyID, 200_000)
	var buckets [1024]int
	var slots [cacheSlots]int
	for i := 0; i < 100_000; i++ {
		for _, space := range []uint32{1, 2} {
			k := keyID{space: space, seg: "user" + strconv.Itoa(i) + "@example.com"}
			v := h.sum(k)
			if prev, dup := seen[v]; dup {
				t.Fatalf("%+v and %+v share hash %#x", prev, k, v)
			}
			seen[v] = k
			buckets[v>>7&1023]++
			slots[cacheIndex(v)]++
		}
	}
	// 200,000 keys in 1,024 buckets: about 195 each, standard deviation
	// about 14; 100 away from the mean is 7 deviations.
	for i, c := range buckets {
		if c < 95 || c > 295 {
			t.Fatalf("bucket %d holds %d keys, want about 195", i, c)
		}
	}
	// The same bound, 7 standard deviations, for the cache's slots.
	mean := 200_000.0 / cacheSlots
	for i, c := range slots {
		if d := float64(c) - mean; d*d > 49*mean {
			t.Fatalf("cache slot %d gets %d keys, want about %.0f", i, c, mean)
		}
	}
	var ones [64]int
	for v := range seen {
		for b := 0; b < 64; b++ {
			ones[b] += int(v >> b & 1)
		}
	}
	for b, c := range ones {
		if c < 98_500 || c > 101_500 { // 6.7 standard deviations
			t.Fatalf("bit %d set in %d of 200,000 hashes, want about half", b, c)
		}
	}
}
