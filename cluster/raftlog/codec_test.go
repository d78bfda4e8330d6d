package raftlog

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// sampleLogs covers every field, empty and full.
func sampleLogs() []*raft.Log {
	return []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogNoop},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte("hello"), AppendedAt: time.Unix(1700000000, 123456789)},
		{Index: 3, Term: 7, Type: raft.LogConfiguration, Data: []byte{0, 1, 2}, Extensions: []byte("ext")},
		{Index: 1<<64 - 1, Term: 1<<64 - 1, Type: raft.LogType(255), Extensions: []byte{9}, AppendedAt: time.Unix(-5, 1)},
		{Index: 1 << 40, Term: 3, Type: raft.LogBarrier, Data: bytes.Repeat([]byte("x"), 1000), AppendedAt: time.Date(2262, 5, 1, 0, 0, 0, 999999999, time.UTC)},
	}
}

// equalLogs compares entries field by field: times by instant, byte
// fields by content (nil and empty are equal).
func equalLogs(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt)
}

func TestCodecRoundTrip(t *testing.T) {
	for _, want := range sampleLogs() {
		enc := appendLog(nil, want)
		var got raft.Log
		if err := decodeLog(enc, &got); err != nil {
			t.Fatalf("decode %d: %v", want.Index, err)
		}
		if !equalLogs(&got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, *want)
		}
		// The decoded entry must not alias the encoding.
		for i := range enc {
			enc[i] = 0xee
		}
		if !equalLogs(&got, want) {
			t.Fatalf("decoded entry %d aliases its input", want.Index)
		}
	}
}

func TestCodecRejectsCorruptInput(t *testing.T) {
	for _, l := range sampleLogs() {
		enc := appendLog(nil, l)
		for n := range len(enc) {
			if err := decodeLog(enc[:n], new(raft.Log)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("entry %d truncated to %d of %d bytes: err %v, want ErrCorrupt", l.Index, n, len(enc), err)
			}
		}
		if err := decodeLog(append(enc, 0), new(raft.Log)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("trailing byte: err %v, want ErrCorrupt", err)
		}
	}
	// sampleLogs()[1] ends with the time: flag, 5 bytes of seconds, 4 of
	// nanoseconds.
	enc := appendLog(nil, sampleLogs()[1])
	timeAt := len(enc) - 10
	for _, c := range []struct {
		name, want string
		b          []byte
	}{
		{"version 2", "unknown log entry version 2", append([]byte{2}, enc[1:]...)},
		{"time flag 7", "bad time flag", append(enc[:timeAt:timeAt], 7)},
		{"nanoseconds", "nanoseconds out of range", append(append([]byte{}, enc[:timeAt+6]...), 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"long varint", "overlong varint", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"empty", "truncated", nil},
	} {
		err := decodeLog(c.b, new(raft.Log))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want ErrCorrupt (%s)", c.name, err, c.want)
		}
	}
}
