package bench

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestVarintMatchesMochi checks the load client's encoders against mochi's decoder.
func TestVarintMatchesMochi(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455} {
		b := appendVarint(nil, n)
		got, _, err := packets.DecodeLength(bytes.NewReader(b))
		if err != nil || got != n {
			t.Fatalf("%d encodes as % x, decodes as %d (%v)", n, b, got, err)
		}
	}
	if s := appendString(nil, "ab"); !bytes.Equal(s, []byte{0, 2, 'a', 'b'}) {
		t.Fatalf("% x", s)
	}
}
