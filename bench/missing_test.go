package bench

import (
	"slices"
	"testing"
)

// TestMissingRangesNameWhatASubscriberLacked: ranges per subscriber and
// publisher, below the highest sequence any subscriber got.
func TestMissingRangesNameWhatASubscriberLacked(t *testing.T) {
	mk := func(seqs ...int) []uint64 {
		w := make([]uint64, 4)
		for _, s := range seqs {
			w[s/64] |= 1 << (s % 64)
		}
		return w
	}
	var all []int
	for i := range 130 {
		all = append(all, i)
	}
	without := func(drop ...int) []int {
		return slices.DeleteFunc(slices.Clone(all), func(s int) bool { return slices.Contains(drop, s) })
	}
	subs := []*subscriber{
		{seen: [][]uint64{mk(all...), mk(0, 1, 2)}},
		{seen: [][]uint64{mk(without(5, 6, 7, 64, 100)...), mk(0, 2)}},
	}
	got := missingRanges(subs)
	want := []string{"sub 1 pub 0 seq 5-7", "sub 1 pub 0 seq 64-64", "sub 1 pub 0 seq 100-100", "sub 1 pub 1 seq 1-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
