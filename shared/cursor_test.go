package shared

import (
	"reflect"
	"testing"
)

func TestCursorFloorAdvancesOverContiguousDone(t *testing.T) {
	c := newCursor("s", 10)
	c.readPos = 20
	c.counts[12] = 3
	for _, off := range []uint64{12, 13, 15} {
		c.markDone(off)
	}
	if c.floor != 10 || len(c.done) != 3 || len(c.counts) != 0 {
		t.Fatalf("floor %d done %v counts %v", c.floor, c.done, c.counts)
	}
	c.markDone(10)
	if c.floor != 11 {
		t.Fatalf("floor %d, want 11", c.floor)
	}
	c.markDone(11)
	if c.floor != 14 || len(c.done) != 1 {
		t.Fatalf("floor %d done %v, want 14 {15}", c.floor, c.done)
	}
	c.markDone(14)
	if c.floor != 16 || len(c.done) != 0 {
		t.Fatalf("floor %d done %v, want 16 {}", c.floor, c.done)
	}
	c.markDone(3) // below the floor: no effect
	if c.floor != 16 || !c.isDone(3) || c.isDone(16) {
		t.Fatal("markDone below floor changed state")
	}
	c.next = 30
	if c.lag() != 14 {
		t.Fatalf("lag %d", c.lag())
	}
}

func TestCursorEncodeRoundTrip(t *testing.T) {
	c := newCursor("s", 100)
	for _, off := range []uint64{102, 103, 104, 110, 200} {
		c.markDone(off)
	}
	c.counts[101] = 2
	c.counts[105] = 16
	got, err := decodeCursor("s", c.encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.floor != 100 || got.readPos != 100 || !reflect.DeepEqual(got.done, c.done) || !reflect.DeepEqual(got.counts, c.counts) {
		t.Fatalf("round trip: %+v, want %+v", got, c)
	}
	for _, bad := range [][]byte{nil, {9}, {1}, {1, 5, 3}, {1, 5, 1, 0, 1, 0}} {
		if _, err := decodeCursor("s", bad); err == nil {
			t.Errorf("decode(% x) accepted", bad)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	c := newCursor("s", 7)
	c.markDone(9)
	c.counts[8] = 1
	f.Add(c.encode())
	// The same decoder with a small bound on done offsets: at the real
	// bound (10M) one input takes seconds, and the fuzzer, finding such
	// inputs interesting, stalled on them.
	const limit = 100_000
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := decodeCursorUpTo("s", b, limit); err == nil {
			if _, err := decodeCursorUpTo("s", c.encode(), limit); err != nil {
				t.Fatalf("re-encode does not decode: %v", err)
			}
		}
	})
}
