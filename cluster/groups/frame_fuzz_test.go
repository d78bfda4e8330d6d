package groups

import (
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// FuzzDecodeFrame: whatever another node sends, decoding returns a frame
// or an error, never panics, and a decoded frame encodes back to one that
// decodes the same.
func FuzzDecodeFrame(f *testing.F) {
	rec := &streams.Record{Offset: 3, Timestamp: time.Unix(0, 9), Topic: "a/b", Payload: []byte("x"), QoS: 1}
	for _, fr := range []frame{
		{kind: frameDeliver, from: "n1", ref: 1, id: 2, qos: 1, dup: true, rec: rec},
		{kind: frameCancel, from: "n1", ref: 1, id: 2},
		{kind: frameAck, from: "n2", ref: 1, id: 2, reason: 0x80, room: 5},
		{kind: frameRoom, from: "n2", ref: 1, room: -1},
		{kind: frameDetach, from: "n1", ref: 7},
	} {
		f.Add(encodeFrame(fr))
	}
	f.Add(encodeJoin(joinRequest{ref: 1, name: "g", filter: "a/#", clientID: "c", qos: 1, receiveMax: 10, room: 10}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeJoin(b)
		_, _ = decodeRef(b)
		fr, err := decodeFrame(b)
		if err != nil {
			return
		}
		again, err := decodeFrame(encodeFrame(fr))
		if err != nil || again.kind != fr.kind || again.from != fr.from || again.ref != fr.ref || again.id != fr.id {
			t.Fatalf("re-encoded frame differs: %+v vs %+v (%v)", again, fr, err)
		}
	})
}
