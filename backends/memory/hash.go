package memory

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
)

// keyHash hashes the store's keys under four random 64-bit secrets of its
// own, so that which identities collide cannot be predicted from outside.
// A store hashes a request's key once (sum) and keeps the result in the key:
// the recent-entry cache is indexed by it, and the map reads it back
// (mapHash) instead of hashing again on a cache miss.
//
// sum reads the segment 16 bytes at a time and folds each block into the
// state with a 64x64->128-bit multiply of the block's words, each XORed with
// a secret, keeping the high and low halves XORed: the construction of the
// fallback hash of Go's runtime (wyhash's), written for this key type. It
// replaces hash/maphash, whose call chain (String, rthashString, memhash,
// aeshashbody) was a sixth of the store's own work for a hot key
// (bench/results/issue13-core/README.md).
type keyHash struct{ k0, k1, k2, k3 uint64 }

func newKeyHash() keyHash {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error (Go 1.24+)
	le := binary.LittleEndian
	// Odd secrets: an even one would drop the product's lowest bit.
	return keyHash{le.Uint64(b[0:]) | 1, le.Uint64(b[8:]) | 1, le.Uint64(b[16:]) | 1, le.Uint64(b[24:]) | 1}
}

// sum returns the hash of k. The length and the prefix id enter the state
// before any byte, so keys of different lengths or prefixes start apart.
func (h *keyHash) sum(k keyID) uint64 {
	s := k.seg
	n := len(s)
	state := mix(h.k0^uint64(n), h.k1^uint64(k.space))
	var a, b uint64
	switch {
	case n > 16:
		i := 0
		for ; n-i > 16; i += 16 {
			state = mix(le64(s, i)^h.k2, le64(s, i+8)^state)
		}
		// The last block is the string's last 16 bytes, overlapping
		// the previous one when n is not a multiple of 16.
		a, b = le64(s, n-16), le64(s, n-8)
	case n >= 8:
		a, b = le64(s, 0), le64(s, n-8)
	case n >= 4:
		a, b = le32(s, 0), le32(s, n-4)
	case n > 0:
		a = uint64(s[0])<<16 | uint64(s[n>>1])<<8 | uint64(s[n-1])
	}
	return mix(a^h.k2, b^state^h.k3)
}

// mapHash is the map's hash function: the key's own hash, set by the store
// before any lookup. The map's per-table seed is not needed: the secrets of
// keyHash play its part.
func mapHash(k memKey, _ uint64) uint64 { return k.hash }

// mix is the 128-bit product of a and b folded to 64 bits.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// le64 and le32 read little-endian words of s at i (the compiler makes each
// one load).
func le64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32(s string, i int) uint64 {
	s = s[i : i+4]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24
}
