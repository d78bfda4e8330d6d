package appends

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// pipeline is a group's pipeline of appends to one peer node: up to
// Options.MaxInFlight requests in flight, their futures delivered to
// raft (Consumer) in the order they were sent, whatever order they are
// settled in.
type pipeline struct {
	t      *Transport
	l      *link
	slots  chan struct{}          // a token per request in flight
	done   chan raft.AppendFuture // Consumer
	closed chan struct{}          // closed by Close
	once   sync.Once

	// mu guards what follows.
	mu struct {
		sync.Mutex
		closed bool
		sent   uint64             // sequence number of the next request
		next   uint64             // sequence number of the next to deliver
		ready  map[uint64]*future // settled out of order, not delivered yet
		// overflow holds, in order, the futures delivered while done
		// was full; drain passes them on. They keep their slots, so
		// that raft cannot send more while it does not read.
		overflow []*future
		draining bool // a drain goroutine runs
	}
}

// doneRoom is how many settled futures wait in done for raft (which
// reads them as they come) before the next ones wait in overflow.
const doneRoom = 64

func newPipeline(t *Transport, l *link) *pipeline {
	n := t.b.opts.MaxInFlight
	return &pipeline{t: t, l: l, slots: make(chan struct{}, n), done: make(chan raft.AppendFuture, n+doneRoom),
		closed: make(chan struct{})}
}

// AppendEntries queues an append; it waits while MaxInFlight are in
// flight.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	select {
	case p.slots <- struct{}{}:
	case <-p.closed:
		return nil, raft.ErrPipelineShutdown
	case <-p.t.closed:
		return nil, ErrClosed
	}
	f := &future{p: p, start: time.Now(), req: args, resp: resp, settled: make(chan struct{})}
	m := newMultiCall(p.t.group, args, f.settle)
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil, raft.ErrPipelineShutdown
	}
	f.seq = p.mu.sent
	p.mu.sent++
	// Queued under mu, so that the link has them in sequence order.
	queued := m.send(p.l)
	p.mu.Unlock()
	if !queued {
		m.fail(ErrClosed) // the Batcher closed: delivered failed
	}
	return f, nil
}

// Consumer returns the settled futures, in the order they were sent.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close stops the pipeline: futures settled from now on are not
// delivered.
func (p *pipeline) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.mu.closed = true
		p.mu.Unlock()
		close(p.closed)
	})
	return nil
}

// deliver hands f, settled, and any settled after it, to raft in
// sequence order.
func (p *pipeline) deliver(f *future) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return
	}
	if f.seq != p.mu.next {
		if p.mu.ready == nil {
			p.mu.ready = make(map[uint64]*future)
		}
		p.mu.ready[f.seq] = f
		return
	}
	for f != nil {
		p.pushLocked(f)
		p.mu.next++
		f = p.mu.ready[p.mu.next]
		delete(p.mu.ready, p.mu.next)
	}
}

// pushLocked hands f to raft, behind those waiting in overflow; a future
// in done gives its slot back.
func (p *pipeline) pushLocked(f *future) {
	if len(p.mu.overflow) == 0 {
		select {
		case p.done <- f:
			<-p.slots
			return
		default:
		}
	}
	p.mu.overflow = append(p.mu.overflow, f)
	if !p.mu.draining {
		p.mu.draining = true
		go p.drain()
	}
}

// drain passes the futures in overflow on to raft, waiting for it to
// read them, until there are none or the pipeline closes.
func (p *pipeline) drain() {
	for {
		p.mu.Lock()
		if p.mu.closed || len(p.mu.overflow) == 0 {
			p.mu.draining = false
			p.mu.Unlock()
			return
		}
		f := p.mu.overflow[0]
		p.mu.Unlock()
		pushed := false
		select {
		case p.done <- f:
			pushed = true
		case <-p.closed:
		case <-p.t.closed:
		}
		p.mu.Lock()
		if !pushed || p.mu.closed {
			p.mu.draining = false
			p.mu.Unlock()
			return
		}
		p.mu.overflow[0] = nil
		p.mu.overflow = p.mu.overflow[1:]
		<-p.slots
		p.mu.Unlock()
	}
}

// future is one pipelined append.
type future struct {
	p       *pipeline
	seq     uint64
	start   time.Time
	req     *raft.AppendEntriesRequest
	resp    *raft.AppendEntriesResponse
	err     error
	settled chan struct{} // closed once err and resp are final
}

// settle is the done of f's calls (multiCall): it fills in raft's
// response and delivers f.
func (f *future) settle(resp raft.AppendEntriesResponse, err error) {
	f.err = err
	if err == nil {
		*f.resp = resp
	}
	close(f.settled)
	f.p.deliver(f)
}

// Error waits until the append is settled and returns its error. A
// failed append leaves its response zero (not a success), which is how
// raft's pipeline notices.
func (f *future) Error() error {
	<-f.settled
	return f.err
}

func (f *future) Start() time.Time                      { return f.start }
func (f *future) Request() *raft.AppendEntriesRequest   { return f.req }
func (f *future) Response() *raft.AppendEntriesResponse { return f.resp }
