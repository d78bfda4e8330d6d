package mqtt

import (
	"bytes"
	"reflect"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// FuzzDecodeState: no stored value, however damaged, makes the decoders of
// the broker state panic (a restore logs and drops what it cannot read),
// and what they decode survives encoding and decoding again.
func FuzzDecodeState(f *testing.F) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, TopicName: "a/b",
		Payload: []byte("x"), Origin: "c", Created: 1, Properties: packets.Properties{ContentType: "t",
			User: []packets.UserProperty{{Key: "k", Val: "v"}}, MessageExpiryInterval: 9}}
	f.Add(encodeRetained(&pk))
	f.Add(encodeDelivery(&delivery{pk: &pk, qos: 1, subIDs: []int{3}}))
	f.Add(encodeSession(&sessionRecord{ProtocolVersion: 5, Expiry: 60, Will: &mochi.Will{TopicName: "w", Payload: []byte("p")}, WillDue: 7}))
	f.Add(encodeSession(&sessionRecord{ProtocolVersion: 4, Stamp: rversion{ts: 9, node: "n1"}}))
	f.Add(encodeSubscription(packets.Subscription{Filter: "f", Qos: 2, NoLocal: true, Identifier: 4}))
	f.Add(encodeSent(sentState{id: 7, pubrel: true}))
	f.Fuzz(func(t *testing.T, v []byte) {
		if r, err := decodeSession(v); err == nil {
			again, err := decodeSession(encodeSession(r))
			if err != nil || !reflect.DeepEqual(again, r) {
				t.Fatalf("session %+v does not survive re-encoding: %+v %v", r, again, err)
			}
		}
		if d, err := decodeDelivery(v); err == nil {
			again, err := decodeDelivery(encodeDelivery(d))
			if err != nil || !reflect.DeepEqual(again, d) {
				t.Fatalf("delivery %+v does not survive re-encoding: %+v %v", d, again, err)
			}
		}
		_, _ = decodeRetained(v)
		_, _ = decodeSubscription("f", v)
		if s, err := decodeSent(v); err == nil && !bytes.Equal(encodeSent(s), v) && v[3] <= 1 {
			t.Fatalf("in-flight state %x decodes to %+v, which encodes to %x", v, s, encodeSent(s))
		}
	})
}

// TestSessionStampEncoding: a session's claim stamp travels at the end of
// its record, flagged, so that the bytes before it are what an earlier
// version wrote (and reads, ignoring the flag and the rest).
func TestSessionStampEncoding(t *testing.T) {
	for _, will := range []*mochi.Will{nil, {Flag: 1, TopicName: "w", Payload: []byte("p"), WillDelayInterval: 5}} {
		r := &sessionRecord{ProtocolVersion: 5, Expiry: 60, DisconnectedAt: 3, Will: will, Stamp: rversion{ts: 1 << 60, node: "node2"}}
		if will != nil {
			r.WillDue = 8
		}
		got, err := decodeSession(encodeSession(r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("decoded %+v, %v; want %+v", got, err, r)
		}
		without := *r
		without.Stamp = rversion{}
		plain, stamped := encodeSession(&without), encodeSession(r)
		if stamped[2] != plain[2]|4 || !bytes.Equal(stamped[3:len(plain)], plain[3:]) {
			t.Fatalf("stamped %x is not %x with the flag and the stamp after", stamped, plain)
		}
	}
	if !(rversion{ts: 2, node: "a"}).newer(rversion{}) {
		t.Fatal("a stamp is not newer than none")
	}
}
