package mqtt

import (
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestStoredPublishReachesInlineSubscription: a stored publish goes to an
// in-process (inline) subscription through the publisher's fan-out
// client, which is made on first use, as well as to network subscribers.
func TestStoredPublishReachesInlineSubscription(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	var mu sync.Mutex
	var got []string
	err := n.broker.Server().Subscribe("inl/#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		mu.Lock()
		got = append(got, pk.TopicName+"="+string(pk.Payload)+" from "+pk.Origin)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	pub := dialRaw(t, n.addr, 4)
	pub.connect("inl-pub", true, packets.Properties{})
	for i, payload := range []string{"a", "b"} {
		pub.publish(uint16(i+1), 1, "inl/t", payload, false)
		pub.expect(packets.Puback)
	}
	testutil.Eventually(t, 5*time.Second, "two messages on the inline subscription", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if got[0] != "inl/t=a from inl-pub" || got[1] != "inl/t=b from inl-pub" {
		t.Fatalf("inline subscription got %v", got)
	}
	if recs := streamRecords(t, n.store, "inl"); len(recs) != 2 {
		t.Fatalf("%d records stored", len(recs))
	}
	got = nil
	mu.Unlock()

	// Once unsubscribed, stored publishes go straight to the sessions
	// again, and the inline handler gets nothing.
	if err := n.broker.Server().Unsubscribe("inl/#", 1); err != nil {
		t.Fatal(err)
	}
	if subs, has := n.broker.sel.routes.lookup("inl/t"); has {
		t.Fatalf("after unsubscribing, inl/t still has a selection: %+v", subs)
	}
	pub.publish(3, 1, "inl/t", "c", false)
	pub.expect(packets.Puback)
	mu.Lock()
	if len(got) != 0 {
		t.Fatalf("the inline subscription got %v after unsubscribing", got)
	}
}
