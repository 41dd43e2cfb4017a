package redis

// HashSlots is the number of hash slots of a Redis Cluster.
const HashSlots = 16384

// crc16Table is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
// reflection), the checksum Redis Cluster hashes keys with, one entry per
// leading byte.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for bit := 0; bit < 8; bit++ {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// KeySlot returns the Cluster hash slot of key (0..HashSlots-1): CRC16 of the
// text between the first "{" and the next "}" when that is not empty
// (docs/semantics.md §6 puts every identity there), else of the whole key.
func KeySlot(key string) int {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j > i+1 {
					key = key[i+1 : j]
				}
				break
			}
		}
		break
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^key[i]]
	}
	return int(crc) % HashSlots
}

// slotGroups writes into groups[i] the index of key i's slot group: keys in
// one slot share a group, groups are numbered 0.. in the order of their first
// key (§11.1). It returns the number of groups.
func slotGroups(keys []string, groups []int) int {
	var slots [maxKeys]int
	n := 0
	for i, k := range keys {
		s := KeySlot(k)
		g := 0
		for g < n && slots[g] != s {
			g++
		}
		if g == n {
			slots[n] = s
			n++
		}
		groups[i] = g
	}
	return n
}
