package shared

import (
	"container/heap"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// pending is one record on its way through the group: buffered, queued for
// a member, in flight, or waiting for redelivery.
type pending struct {
	cur   *cursor
	rec   streams.Record
	count uint16  // deliveries so far (restored from the cursor after a restart)
	last  *member // the member it was last delivered to

	// While in flight (member != nil):
	member   *member
	cancel   func() // withdraws the delivery from the member's transport
	deadline time.Time
	sentAt   time.Time
	heapIdx  int
	// stale deliveries belong to a cursor that was seeked or removed: their
	// ack only frees the member's window.
	stale bool
}

// deadlines is a min-heap of in-flight deliveries by deadline (nsqd's
// in-flight priority queue): one tick pops every expired delivery, no timer
// per message.
type deadlines []*pending

func (h deadlines) Len() int           { return len(h) }
func (h deadlines) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlines) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *deadlines) Push(x any) {
	p := x.(*pending)
	p.heapIdx = len(*h)
	*h = append(*h, p)
}
func (h *deadlines) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	p.heapIdx = -1
	return p
}

func (h *deadlines) add(p *pending) { heap.Push(h, p) }

func (h *deadlines) remove(p *pending) {
	if p.heapIdx >= 0 && p.heapIdx < len(*h) && (*h)[p.heapIdx] == p {
		heap.Remove(h, p.heapIdx)
	}
}

// expired pops the deliveries whose deadline is before now.
func (h *deadlines) expired(now time.Time) []*pending {
	var out []*pending
	for len(*h) > 0 && (*h)[0].deadline.Before(now) {
		out = append(out, heap.Pop(h).(*pending))
	}
	return out
}

// oldest returns the earliest send time in the heap (zero if empty). It is
// linear, for statistics only.
func (h deadlines) oldest() time.Time {
	var t time.Time
	for _, p := range h {
		if t.IsZero() || p.sentAt.Before(t) {
			t = p.sentAt
		}
	}
	return t
}
