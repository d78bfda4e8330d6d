package mqtt

import "sync"

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
// queue. Messages mochi routes itself (wills, $SYS) are not covered.
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
