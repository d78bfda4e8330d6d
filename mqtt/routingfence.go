package mqtt

import (
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// routingFence lets a node that ends a session it handed over wait for
// the messages already on their way into the session's queue.
//
// A publisher's goroutine looks a message's subscribers up, then queues
// it for each of them. When a session moves to another node, this node
// takes the client out of its topic index, waits for its broker state to
// be on disk, and sends the new node what was queued since the copy. A
// message whose subscribers were looked up just before the client left
// the index (while the other nodes, this one among them, did not know the
// new node's filters yet, so it was not forwarded there) and queued only
// after that read reached neither node. So in cluster mode every routing
// of a message holds the fence for reading, from the lookup until the
// message is queued, and the move takes it for writing and lets go at
// once (wait) between taking the client out of the index and reading the
// queue. A will mochi sends as its client leaves holds it from OnWill to
// OnWillSent (willFenceHook). Not covered: $SYS messages, and a will
// mochi sends after its delay (a will this node restored, or one of
// another node's client, goes through Broker.Publish and is covered).
// mochi hooks and inline subscriptions added to the broker run inside a
// routing: they must not publish through Broker.Publish (a second read
// lock deadlocks once a move waits), and a slow one holds a move up.
//
// A nil *routingFence (a standalone node) does nothing.
type routingFence struct {
	mu sync.RWMutex // guards nothing: a fence, not a lock of state
}

// enter starts a message's routing; exit ends it. Neither may be called
// again by the goroutine in between (a read lock taken twice deadlocks
// with a waiting writer).
func (f *routingFence) enter() {
	if f != nil {
		f.mu.RLock()
	}
}

func (f *routingFence) exit() {
	if f != nil {
		f.mu.RUnlock()
	}
}

// wait returns once every routing entered before it has ended.
func (f *routingFence) wait() {
	if f != nil {
		f.mu.Lock()
		f.mu.Unlock()
	}
}

// willFenceHook holds the routing fence while mochi sends a will as its
// client leaves (sendLWT: OnWill, retained, subscribers looked up and
// queued, OnWillSent, all on the client's goroutine). A will with a
// delay is only scheduled there; mochi sends it later without OnWill, so
// it is not fenced.
type willFenceHook struct {
	mochi.HookBase
	f *routingFence
	// entered holds the clients whose will holds the fence (OnWill with no
	// delay), so that OnWillSent lets go only of what it entered.
	entered sync.Map // *mochi.Client -> struct{}
}

func (h *willFenceHook) ID() string { return "mqstream-will-fence" }

func (h *willFenceHook) Provides(b byte) bool { return b == mochi.OnWill || b == mochi.OnWillSent }

func (h *willFenceHook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	if cl.Properties.Will.WillDelayInterval == 0 { // sent now (sendLWT)
		if _, loaded := h.entered.LoadOrStore(cl, struct{}{}); !loaded {
			h.f.enter()
		}
	}
	return will, nil
}

func (h *willFenceHook) OnWillSent(cl *mochi.Client, pk packets.Packet) {
	if delayedWill(&pk) {
		// Sent by mochi's loop after its delay, to whichever connection
		// holds the id now: never one this hook entered for, though
		// that connection's own will (no delay) may be on its way.
		return
	}
	if _, ok := h.entered.LoadAndDelete(cl); ok {
		h.f.exit()
	}
}
