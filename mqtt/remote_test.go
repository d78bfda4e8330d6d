package mqtt

import (
	"errors"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestForwardedMessageRoundTrip(t *testing.T) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Retain: true},
		TopicName:   "a/b",
		Payload:     []byte("payload"),
		PacketID:    99,
		Expiry:      1000 + 30,
		Properties: packets.Properties{PayloadFormat: 1, PayloadFormatFlag: true, ContentType: "ct", ResponseTopic: "r/t",
			CorrelationData: []byte{0, 1}, MessageExpiryInterval: 60, TopicAlias: 3, TopicAliasFlag: true,
			SubscriptionIdentifier: []int{4}, User: []packets.UserProperty{{Key: "k", Val: "v"}}},
	}
	msg, err := encodeForwarded(&pk, "client-1", 1000)
	if err != nil {
		t.Fatal(err)
	}
	got, origin, err := decodeForwarded(msg, 2000)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Properties
	if origin != "client-1" || got.Origin != "client-1" || got.TopicName != "a/b" || string(got.Payload) != "payload" ||
		got.FixedHeader.Qos != 2 || !got.FixedHeader.Retain || got.PacketID != 0 || got.Created != 2000 {
		t.Fatalf("decoded %+v from %q", got, origin)
	}
	if !p.PayloadFormatFlag || p.PayloadFormat != 1 || p.ContentType != "ct" || p.ResponseTopic != "r/t" ||
		string(p.CorrelationData) != "\x00\x01" || len(p.User) != 1 || p.User[0] != (packets.UserProperty{Key: "k", Val: "v"}) {
		t.Fatalf("properties: %+v", p)
	}
	// The expiry is what was left when it was forwarded; a topic alias
	// and the publisher's subscription identifiers do not travel.
	if p.MessageExpiryInterval != 30 || got.Expiry != 2030 || p.TopicAlias != 0 || len(p.SubscriptionIdentifier) != 0 {
		t.Fatalf("expiry %d (at %d), alias %d, subscription ids %v", p.MessageExpiryInterval, got.Expiry, p.TopicAlias, p.SubscriptionIdentifier)
	}
	if _, err := encodeForwarded(&pk, "c", 1030); err == nil {
		t.Fatal("an expired message was encoded")
	}
	q0 := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "t"}
	msg, err = encodeForwarded(&q0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, origin, err := decodeForwarded(msg, 0); err != nil || got.TopicName != "t" || origin != "" || len(got.Payload) != 0 {
		t.Fatalf("QoS 0, empty payload: %+v %q %v", got, origin, err)
	}
}

func TestMalformedForwardedMessages(t *testing.T) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "t", Payload: []byte("p")}
	good, err := encodeForwarded(&pk, "c", 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := [][]byte{nil, {2}, {forwardVersion1}, {forwardVersion1, 50, 'c'}, good[:len(good)-1], append(append([]byte{}, good...), 0),
		{forwardVersion1, 0, packets.Subscribe << 4, 0}, {forwardVersion1, 0, packets.Publish<<4 | 6, 0}}
	for _, b := range bad {
		if _, _, err := decodeForwarded(b, 0); !errors.Is(err, errBadForward) {
			t.Errorf("%x: %v", b, err)
		}
	}
}

func FuzzDecodeForwarded(f *testing.F) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "t", Payload: []byte("p"),
		Properties: packets.Properties{ContentType: "x", User: []packets.UserProperty{{Key: "a", Val: "b"}}}}
	good, _ := encodeForwarded(&pk, "c", 0)
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, origin, err := decodeForwarded(b, 0)
		if err != nil {
			return
		}
		if _, err := encodeForwarded(&got, origin, 0); err != nil && got.Properties.MessageExpiryInterval == 0 {
			t.Fatalf("a decoded message does not encode again: %v", err)
		}
	})
}
