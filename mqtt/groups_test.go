package mqtt

import (
	"bytes"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
)

// TestGroupDeliveryPacketDecodes checks the PUBLISH a consumer group's
// record becomes (record properties, subscription identifier, Retain As
// Published, DUP of a redelivery) against mochi's decoder, for MQTT 3.1.1
// and 5.
func TestGroupDeliveryPacketDecodes(t *testing.T) {
	rec := streams.Record{Topic: "jobs/1", Payload: []byte("payload"), QoS: 1, Retain: true,
		ContentType: "text/plain", ResponseTopic: "reply", CorrelationData: []byte{1, 2},
		PayloadFormat: 1, HasPayloadFormat: true,
		UserProperties: []streams.UserProperty{{Key: "k", Value: "v"}}}
	for _, version := range []byte{4, 5} {
		cl := &mochi.Client{}
		cl.Properties.ProtocolVersion = version
		m := &groupMember{cl: cl, rap: true, subIDs: []int{7}, qos: 1}
		d := &delivery{pk: recordPacket(&packets.Packet{}, &rec), qos: 1, subIDs: m.subIDs, dup: true, group: true,
			retain: rec.Retain && m.rap && version == 5}
		var buf bytes.Buffer
		out := d.packet(cl, 513, false)
		if err := out.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		var fh packets.FixedHeader
		if err := fh.Decode(b[0]); err != nil {
			t.Fatal(err)
		}
		rem, n, err := packets.DecodeLength(bytes.NewReader(b[1:]))
		if err != nil || rem != len(b)-1-n {
			t.Fatalf("v%d: remaining length %d (%v), have %d bytes", version, rem, err, len(b)-1-n)
		}
		pk := packets.Packet{FixedHeader: fh, ProtocolVersion: version}
		if err := pk.PublishDecode(b[1+n:]); err != nil {
			t.Fatalf("v%d: %v", version, err)
		}
		if pk.TopicName != "jobs/1" || string(pk.Payload) != "payload" || pk.PacketID != 513 || !pk.FixedHeader.Dup || pk.FixedHeader.Qos != 1 {
			t.Fatalf("v%d: %+v", version, pk)
		}
		if version == 4 && pk.FixedHeader.Retain {
			t.Fatal("v4: RETAIN set on a live delivery")
		}
		if version == 5 {
			p := pk.Properties
			if p.ContentType != "text/plain" || p.ResponseTopic != "reply" || !bytes.Equal(p.CorrelationData, []byte{1, 2}) ||
				p.PayloadFormat != 1 || len(p.User) != 1 || p.User[0].Key != "k" || len(p.SubscriptionIdentifier) != 1 ||
				p.SubscriptionIdentifier[0] != 7 || !pk.FixedHeader.Retain {
				t.Fatalf("v5 properties %+v retain %v", p, pk.FixedHeader.Retain)
			}
		}
	}
}
