package bincode

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestRoundTripAndErrors(t *testing.T) {
	b := []byte{7}
	b = binary.AppendUvarint(b, 300)
	b = binary.AppendVarint(b, -5)
	b = AppendString(b, "hi")
	b = AppendBytes(b, []byte{1, 2})
	d := Reader{B: b}
	if d.Byte() != 7 || d.Uvarint() != 300 || d.Varint() != -5 || string(d.Bytes()) != "hi" || len(d.Bytes()) != 2 {
		t.Fatalf("round trip failed: %v", d.Err)
	}
	if d.End(); d.Err != nil {
		t.Fatal(d.Err)
	}
	for _, in := range [][]byte{nil, {0x80}, {5, 'a'}} {
		d := Reader{B: in}
		d.Bytes()
		if !errors.Is(d.Err, ErrShort) {
			t.Errorf("%x: err %v, want ErrShort", in, d.Err)
		}
		if d.Byte() != 0 || d.Uvarint() != 0 || d.Varint() != 0 {
			t.Errorf("%x: reads after an error returned data", in)
		}
	}
	d = Reader{B: []byte{1, 2}}
	d.Byte()
	if d.End(); d.Err == nil {
		t.Error("trailing byte not reported")
	}
}
