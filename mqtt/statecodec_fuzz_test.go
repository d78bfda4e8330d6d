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
