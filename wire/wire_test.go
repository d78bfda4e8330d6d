package wire

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestVarintMatchesMochi(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455} {
		b := AppendVarint(nil, n)
		if len(b) != VarintLen(n) {
			t.Fatalf("%d: %d bytes, VarintLen %d", n, len(b), VarintLen(n))
		}
		got, _, err := packets.DecodeLength(bytes.NewReader(b))
		if err != nil || got != n {
			t.Fatalf("%d encodes as % x, decodes as %d (%v)", n, b, got, err)
		}
	}
	if s := AppendString(nil, "ab"); !bytes.Equal(s, []byte{0, 2, 'a', 'b'}) {
		t.Fatalf("% x", s)
	}
}
