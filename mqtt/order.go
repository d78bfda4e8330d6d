package mqtt

import (
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Subscriptions in arrival order.
//
// mochi reads every connection on its own goroutine, so a SUBSCRIBE that
// reached the server before another client's PUBLISH can still be in the
// subscription index after that PUBLISH was routed: the subscriber misses
// a message it was sent after subscribing (the Eclipse Paho suite's
// test_request_response and test_subscribe_options publish right after
// the other client's SUBSCRIBE, without waiting for its SUBACK; a
// single-threaded broker processes them in arrival order). The
// subscriptionOrder makes routing wait for the subscription changes that
// were read before the publish: each SUBSCRIBE/UNSUBSCRIBE takes a ticket
// when it is read and returns it once processed; a publish routes only
// once every ticket issued before it was read has been returned. With no
// change in progress (the steady state) the wait is one atomic load. A
// ticket whose packet never completes (a malformed packet, a dropped
// connection) is returned at the client's next packet or departure, and
// no publish waits longer than maxOrderWait.
type subscriptionOrder struct {
	mochi.HookBase
	active atomic.Int64 // tickets out
	held   sync.Map     // *mochi.Client -> uint64: the ticket of its packet in progress

	mu struct {
		sync.Mutex
		last    uint64              // the last ticket issued
		out     map[uint64]struct{} // tickets not yet returned
		changed chan struct{}       // closed when a ticket is returned
	}
}

// maxOrderWait bounds how long a publish waits for subscription changes
// read before it.
const maxOrderWait = time.Second

func newSubscriptionOrder() *subscriptionOrder {
	o := &subscriptionOrder{}
	o.mu.out = map[uint64]struct{}{}
	o.mu.changed = make(chan struct{})
	return o
}

func (o *subscriptionOrder) ID() string { return "mqstream-subscription-order" }

func (o *subscriptionOrder) Provides(b byte) bool {
	return b == mochi.OnPacketRead || b == mochi.OnPacketProcessed || b == mochi.OnDisconnect
}

// OnPacketRead takes a ticket for a SUBSCRIBE or UNSUBSCRIBE (and returns
// the client's previous one, whose packet is done).
func (o *subscriptionOrder) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	o.release(cl)
	if t := pk.FixedHeader.Type; t == packets.Subscribe || t == packets.Unsubscribe {
		o.mu.Lock()
		o.mu.last++
		ticket := o.mu.last
		o.mu.out[ticket] = struct{}{}
		o.mu.Unlock()
		o.active.Add(1)
		o.held.Store(cl, ticket)
	}
	return pk, nil
}

// OnPacketProcessed returns the ticket: the change is in mochi's index
// (and in the selector's route index).
func (o *subscriptionOrder) OnPacketProcessed(cl *mochi.Client, _ packets.Packet, _ error) {
	o.release(cl)
}

// OnDisconnect returns a ticket its packet left behind.
func (o *subscriptionOrder) OnDisconnect(cl *mochi.Client, _ error, _ bool) { o.release(cl) }

func (o *subscriptionOrder) release(cl *mochi.Client) {
	v, ok := o.held.LoadAndDelete(cl)
	if !ok {
		return
	}
	o.mu.Lock()
	delete(o.mu.out, v.(uint64))
	close(o.mu.changed)
	o.mu.changed = make(chan struct{})
	o.mu.Unlock()
	o.active.Add(-1)
}

// wait returns once every subscription change read so far has been
// processed (or after maxOrderWait).
func (o *subscriptionOrder) wait() {
	if o.active.Load() == 0 {
		return
	}
	o.mu.Lock()
	upTo := o.mu.last
	var timer *time.Timer
	for {
		pending := false
		for t := range o.mu.out {
			if t <= upTo {
				pending = true
				break
			}
		}
		if !pending {
			o.mu.Unlock()
			break
		}
		ch := o.mu.changed
		o.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(maxOrderWait)
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		}
		o.mu.Lock()
	}
	if timer != nil {
		timer.Stop()
	}
}
