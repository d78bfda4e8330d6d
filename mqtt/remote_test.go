package mqtt

import (
	"errors"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
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

// FuzzDecodeForwarded feeds every frame another node can send: forwarded
// messages, retained states, will frames, claims and handed-over sessions.
func FuzzDecodeForwarded(f *testing.F) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "t", Payload: []byte("p"),
		Properties: packets.Properties{ContentType: "x", User: []packets.UserProperty{{Key: "a", Val: "b"}}}}
	good, _ := encodeForwarded(&pk, "c", 0)
	f.Add(good)
	retained, _ := encodeRetainedState(&pk, rversion{ts: 5, node: "n"}, 0)
	f.Add(retained)
	f.Add(encodeWillSet("n2", 1, "c", Message{Topic: "w", Payload: []byte("x"), UserProperties: []streams.UserProperty{{Key: "k", Value: "v"}}}, 0))
	f.Add(encodeWillClear("n2", 1, "c"))
	f.Add(encodeClaim("c", rversion{ts: 1, node: "n"}, false, encodeWillClear("n", 1, "c")))
	f.Add([]byte{1, 1, 'c', 1, 'v'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, origin, err := decodeForwarded(b, 0); err == nil {
			if _, err := encodeForwarded(&got, origin, 0); err != nil && got.Properties.MessageExpiryInterval == 0 {
				t.Fatalf("a decoded message does not encode again: %v", err)
			}
		}
		_, _, _ = decodeRetainedState(b, 0)
		_, _, _, _, _ = decodeClaim(b)
		_, _ = decodeSessionMove("c", b)
		_, _, _ = decodeHandOver(b)
		_, _, _, _ = decodeSettle(b)
		if len(b) > 0 && b[0] >= forwardWillSet && b[0] <= forwardHello {
			w := &clusterWills{b: &Broker{opts: Options{Remote: quietRemote{}}}, peers: map[string]*peerWills{}, pending: map[string]*time.Timer{}}
			_ = w.apply(b)
		}
	})
}

// quietRemote is a Remote that never acts for another node.
type quietRemote struct{ aloneRemote }

func (quietRemote) Designated(string) bool { return false }

func TestRetainedStateRoundTrip(t *testing.T) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, TopicName: "a/b",
		Payload: []byte("on"), Origin: "dev-1"}
	v := rversion{ts: 1 << 62, node: "n2"}
	msg, err := encodeRetainedState(&pk, v, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, gv, err := decodeRetainedState(msg, 0)
	if err != nil || gv != v || got.TopicName != "a/b" || string(got.Payload) != "on" || got.Origin != "dev-1" || !got.FixedHeader.Retain {
		t.Fatalf("decoded %+v at %+v: %v", got, gv, err)
	}
	// A cleared topic travels as an empty payload.
	clear := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: "a/b"}
	if msg, err = encodeRetainedState(&clear, v, 0); err != nil {
		t.Fatal(err)
	}
	if got, _, err := decodeRetainedState(msg, 0); err != nil || len(got.Payload) != 0 {
		t.Fatalf("cleared: %+v %v", got, err)
	}
	for _, b := range [][]byte{nil, {forwardVersion1}, {forwardRetained}, {forwardRetained, 1, 9, 'n'}, msg[:len(msg)-1]} {
		if _, _, err := decodeRetainedState(b, 0); !errors.Is(err, errBadForward) {
			t.Errorf("%x: %v", b, err)
		}
	}
	vb := encodeVersion(v)
	if back, err := decodeVersion(vb); err != nil || back != v {
		t.Fatalf("version round trip: %+v %v", back, err)
	}
	if _, err := decodeVersion([]byte{stateVersion}); err == nil {
		t.Fatal("a truncated version decoded")
	}
}

func TestRetainedVersionsOrder(t *testing.T) {
	a, b := rversion{ts: 5, node: "n1"}, rversion{ts: 5, node: "n2"}
	if !b.newer(a) || a.newer(b) || a.newer(a) || !(rversion{ts: 6}).newer(b) || (rversion{}).newer(a) {
		t.Fatal("rversion.newer is not a strict order by (ts, node)")
	}
	s := newRetainedSync(nil, "n1")
	v1 := s.stamp("t")
	if !s.observe("t", rversion{ts: v1.ts + 10, node: "n0"}) || s.observe("t", v1) {
		t.Fatal("observe keeps only newer versions")
	}
	if v2 := s.stamp("t"); v2.ts <= v1.ts+10 {
		t.Fatalf("the clock did not move past a version it saw: %d after %d", v2.ts, v1.ts+10)
	}
	if (s.stamp("$SYS/x") != rversion{}) || ((*retainedSync)(nil).stamp("t") != rversion{}) {
		t.Fatal("$SYS topics and standalone brokers get versions")
	}
}

func TestClaimCodec(t *testing.T) {
	v := rversion{ts: 12345, node: "n3"}
	will := encodeWillSet("n3", 7, "client/1", Message{Topic: "w", Payload: []byte("gone")}, 0)
	id, got, clean, w, err := decodeClaim(encodeClaim("client/1", v, true, will))
	if err != nil || id != "client/1" || got != v || !clean || string(w) != string(will) {
		t.Fatalf("claim round trip: %q %+v %v %x %v", id, got, clean, w, err)
	}
	if _, _, clean, w, _ := decodeClaim(encodeClaim("c", v, false, nil)); clean || w != nil {
		t.Fatal("clean start off decoded as on, or a will out of nothing")
	}
	for _, b := range [][]byte{nil, {2}, {claimVersion1}, {claimVersion1, 2, 1, 1, 'n', 1, 'c'}, {claimVersion1, 0, 1, 5, 'n'},
		encodeClaim("", v, false, nil), append(encodeClaim("c", v, false, nil), forwardHello)} {
		if _, _, _, _, err := decodeClaim(b); !errors.Is(err, errBadForward) {
			t.Errorf("%x: %v", b, err)
		}
	}
}

func TestSessionMoveRejectsForeignKeys(t *testing.T) {
	own := clientKey(keySession, "a", 0)
	other := clientKey(keySession, "ab", 0)
	enc := func(keys ...[]byte) []byte {
		b := []byte{byte(len(keys))}
		for _, k := range keys {
			b = append(b, byte(len(k)))
			b = append(b, k...)
			b = append(b, 1, 'v')
		}
		return b
	}
	if w, err := decodeSessionMove("a", enc(own)); err != nil || len(w) != 1 || string(w[0].Value) != "v" {
		t.Fatalf("own key: %v %v", w, err)
	}
	for _, b := range [][]byte{enc(other), enc(own, []byte("r/topic")), append(enc(own), 0), {5}, {1, 9}} {
		if _, err := decodeSessionMove("a", b); !errors.Is(err, errBadForward) {
			t.Errorf("%x: %v", b, err)
		}
	}
}

// TestSweepForgetsOldTombstones: a running node forgets the versions of
// topics cleared more than tombstoneTTL ago, and keeps those of retained
// topics and of recent clears.
func TestSweepForgetsOldTombstones(t *testing.T) {
	server := mochi.New(nil)
	r := &retainer{server: server, sync: newRetainedSync(nil, "n1")}
	now := time.Now()
	old := uint64(now.Add(-tombstoneTTL - time.Minute).UnixNano())
	recent := uint64(now.Add(-time.Minute).UnixNano())
	r.sync.versions["old/cleared"] = rversion{ts: old, node: "n1"}
	r.sync.versions["old/held"] = rversion{ts: old, node: "n2"}
	r.sync.versions["recent/cleared"] = rversion{ts: recent, node: "n1"}
	server.Topics.RetainMessage(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
		TopicName: "old/held", Payload: []byte("kept")})
	if n := r.sweepTombstones(now); n != 1 {
		t.Fatalf("swept %d, want 1", n)
	}
	for topic, want := range map[string]bool{"old/cleared": false, "old/held": true, "recent/cleared": true} {
		if _, ok := r.sync.version(topic); ok != want {
			t.Errorf("%s kept: %v, want %v", topic, ok, want)
		}
	}
	if n := (&retainer{server: server}).sweepTombstones(now); n != 0 {
		t.Fatalf("standalone swept %d", n)
	}
}
