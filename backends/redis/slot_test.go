package redis

import "testing"

func TestKeySlot(t *testing.T) {
	// CRC-16/XMODEM's check value for "123456789" is 0x31C3.
	if got := KeySlot("123456789"); got != 0x31C3%HashSlots {
		t.Fatalf("KeySlot(123456789) = %d, want %d", got, 0x31C3%HashSlots)
	}
	same := []struct{ a, b string }{
		{"{user1000}.following", "user1000"},
		{"rl:fw:user:10/60:{alice}", "alice"},
		{"rl:fw:user_per_server:10/60:{alice}:srv1", "alice"},
		{"foo{bar}{zap}", "bar"},     // only the first tag counts
		{"foo{{bar}}zap", "{bar"},    // the tag ends at the first "}"
		{"foo{}{bar}", "foo{}{bar}"}, // an empty tag: the whole key
		{"foo{bar", "foo{bar"},       // no closing brace: the whole key
		{"{}", "{}"},
	}
	for _, c := range same {
		if KeySlot(c.a) != KeySlot(c.b) {
			t.Errorf("KeySlot(%q) = %d, want KeySlot(%q) = %d", c.a, KeySlot(c.a), c.b, KeySlot(c.b))
		}
	}
	for _, k := range []string{"", "a", "rl:fw:tool:3/3600:{search}", "\xff\xfe"} {
		if s := KeySlot(k); s < 0 || s >= HashSlots {
			t.Errorf("KeySlot(%q) = %d, out of range", k, s)
		}
	}
}

func TestSlotGroups(t *testing.T) {
	tests := []struct {
		keys []string
		want []int
		n    int
	}{
		{[]string{"a:{u}", "b:{u}:s", "c:{t}", "d:{x}"}, []int{0, 0, 1, 2}, 3},
		{[]string{"{a}1", "{b}", "{a}2"}, []int{0, 1, 0}, 2},
		{[]string{"only"}, []int{0}, 1},
	}
	for _, tc := range tests {
		got := make([]int, len(tc.keys))
		n := slotGroups(tc.keys, got)
		if n != tc.n {
			t.Errorf("slotGroups(%q): %d groups, want %d", tc.keys, n, tc.n)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("slotGroups(%q) = %v, want %v", tc.keys, got, tc.want)
				break
			}
		}
	}
}
