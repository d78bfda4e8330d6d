package appends

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// call is one AppendEntries on its way to a peer node.
type call struct {
	id    uint64 // set when written, unique on its connection
	group string
	req   *raft.AppendEntriesRequest
	resp  raft.AppendEntriesResponse // the follower's, once answered
	// written is when c went out on its connection (guarded by link.mu).
	written time.Time
	// done is called once, from whichever goroutine settles the call:
	// err nil means resp holds the follower's response.
	done func(c *call, err error)
}

// size estimates c's encoded size.
func (c *call) size() int {
	n := 64 + len(c.group) + len(c.req.ID) + len(c.req.Addr) + len(c.req.Leader)
	for _, e := range c.req.Entries {
		n += 32 + len(e.Data) + len(e.Extensions)
	}
	return n
}

// link is the sending side to one peer node: the requests of every group
// queue here and one goroutine (run) writes whatever is queued as one
// frame on the link's connection, dialing it when there is none; a reader
// per connection settles the calls as answers come.
type link struct {
	b    *Batcher
	addr string
	wake chan struct{} // capacity 1: something was queued

	// mu guards what follows, and the current connection's pending calls
	// and ids. It is never held across network I/O.
	mu struct {
		sync.Mutex
		closed bool
		queue  []*call
		conn   *conn // nil while there is none
	}
}

// conn is one connection to the peer node. Its fields other than c are
// guarded by link.mu.
type conn struct {
	c       net.Conn
	next    uint64           // the next request's id
	pending map[uint64]*call // written, not yet answered; nil once broken
	// readArmed is when the read deadline was last set (zero: none).
	readArmed time.Time
	// checked is when pending was last searched for a request
	// unanswered past its bound (overdueLocked).
	checked time.Time
	// writeArmed is when the write deadline was last set; only the
	// link's writer uses it.
	writeArmed time.Time
}

func newLink(b *Batcher, addr string) *link {
	return &link{b: b, addr: addr, wake: make(chan struct{}, 1)}
}

// enqueue queues c for the peer; it is settled (c.done) once answered,
// or when its connection fails or the Batcher closes. On a closed link it
// returns false and c is not queued: the caller settles it (enqueue may
// be called with the caller's locks held, which c.done may take).
func (l *link) enqueue(c *call) bool {
	return l.enqueueAll([]*call{c})
}

// enqueueAll queues calls, in order and with nothing between them; false
// when the link takes no more (none is queued then).
func (l *link) enqueueAll(calls []*call) bool {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return false
	}
	l.mu.queue = append(l.mu.queue, calls...)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// failQueued fails the calls not written yet; with ErrClosed, the link
// takes no more.
func (l *link) failQueued(err error) {
	l.mu.Lock()
	queue := l.mu.queue
	l.mu.queue = nil
	if errors.Is(err, ErrClosed) {
		l.mu.closed = true
	}
	l.mu.Unlock()
	for _, c := range queue {
		c.done(c, err)
	}
}

// run writes what is queued until the Batcher closes.
func (l *link) run() {
	defer l.b.wg.Done()
	var buf []byte
	for {
		select {
		case <-l.wake:
		case <-l.b.closed:
			l.failQueued(ErrClosed)
			return
		}
		// The groups' entries are stored with one fsync and their
		// replication woken together: let the others that are ready
		// queue theirs first.
		runtime.Gosched()
		for l.flush(&buf) {
		}
	}
}

// flush writes one frame of what is queued, dialing first if needed; it
// reports whether it wrote one (there may be more).
func (l *link) flush(buf *[]byte) bool {
	l.mu.Lock()
	empty, cn := len(l.mu.queue) == 0, l.mu.conn
	l.mu.Unlock()
	if empty {
		return false
	}
	if cn == nil {
		var err error
		if cn, err = l.dialHeld(); err != nil {
			if !errors.Is(err, ErrClosed) {
				err = fmt.Errorf("%w: %s: %w", ErrUnreachable, l.addr, err)
			}
			l.failQueued(err)
			return false
		}
	}

	l.mu.Lock()
	if l.mu.conn != cn {
		// It broke since: dial again.
		l.mu.Unlock()
		return true
	}
	n, size := 0, 0
	for n < len(l.mu.queue) && (n == 0 || size < l.b.opts.MaxFrame) {
		size += l.mu.queue[n].size()
		n++
	}
	batch := slices.Clone(l.mu.queue[:n])
	clear(l.mu.queue[:n])
	l.mu.queue = l.mu.queue[n:]
	now := time.Now()
	for _, c := range batch {
		c.id = cn.next
		cn.next++
		c.written = now
		cn.pending[c.id] = c
	}
	l.armLocked(cn, now)
	l.mu.Unlock()

	b, at := beginFrame((*buf)[:0])
	b = endFrame(appendRequests(b, batch), at)
	*buf = b
	if rearm(cn.writeArmed, now, l.b.opts.Timeout) {
		_ = cn.c.SetWriteDeadline(now.Add(l.b.opts.Timeout))
		cn.writeArmed = now
	}
	l.b.frames.Add(1)
	l.b.requests.Add(int64(len(batch)))
	if _, err := cn.c.Write(b); err != nil {
		l.broken(cn, err)
	}
	return true
}

// armLocked keeps cn's read deadline Timeout ahead while requests are in
// flight: it moves it when it was set more than a quarter of Timeout ago
// (a deadline moved on every frame costs a runtime timer update each
// time). An idle connection may still hit the deadline; read then clears
// it.
func (l *link) armLocked(cn *conn, now time.Time) {
	if len(cn.pending) > 0 && rearm(cn.readArmed, now, l.b.opts.Timeout) {
		_ = cn.c.SetReadDeadline(now.Add(l.b.opts.Timeout))
		cn.readArmed = now
	}
}

// rearm reports whether a deadline of timeout set at armed (zero: none)
// is to be moved at now: it is less than three quarters of timeout away.
func rearm(armed, now time.Time, timeout time.Duration) bool {
	return armed.IsZero() || now.Sub(armed) > timeout/4
}

// dialHeld dials the peer until it answers, the Batcher closes or
// Options.DialHold has passed since the first failure (see there); the
// requests queued meanwhile wait.
func (l *link) dialHeld() (*conn, error) {
	hold := l.b.opts.DialHold
	deadline := time.Now().Add(hold)
	for {
		cn, err := l.dial()
		if err == nil || errors.Is(err, ErrClosed) || hold < 0 || !time.Now().Before(deadline) {
			return cn, err
		}
		retry := time.NewTimer(min(hold/10, time.Until(deadline)))
		select {
		case <-l.b.closed:
			retry.Stop()
			return nil, ErrClosed
		case <-retry.C:
		}
	}
}

// dial connects to the peer and starts reading its answers.
func (l *link) dial() (*conn, error) {
	c, err := l.b.layer.Dial(raft.ServerAddress(l.addr), l.b.opts.DialTimeout)
	if err != nil {
		return nil, err
	}
	if !l.b.track(c) {
		_ = c.Close()
		return nil, ErrClosed
	}
	cn := &conn{c: c, pending: make(map[uint64]*call)}
	l.mu.Lock()
	l.mu.conn = cn
	l.mu.Unlock()
	l.b.wg.Add(1)
	go l.read(cn)
	return cn, nil
}

// read settles cn's calls with the answers the peer sends, until cn
// fails.
func (l *link) read(cn *conn) {
	defer l.b.wg.Done()
	r := bufio.NewReaderSize(cn.c, 64<<10)
	type settled struct {
		c *call
		a *answer
	}
	var done []settled
	for {
		body, err := readFrame(r)
		if errors.Is(err, errIdle) {
			// Nothing in flight, or requests written since the deadline
			// passed (the writer moved it on): not a silent peer.
			l.mu.Lock()
			idle := cn.pending != nil && len(cn.pending) == 0
			if idle {
				_ = cn.c.SetReadDeadline(time.Time{})
				cn.readArmed = time.Time{}
			}
			moved := cn.pending != nil && time.Since(cn.readArmed) < l.b.opts.Timeout
			l.mu.Unlock()
			if idle || moved {
				continue
			}
			err = fmt.Errorf("no answer within %s: %w", l.b.opts.Timeout, os.ErrDeadlineExceeded)
		}
		if err != nil {
			l.broken(cn, err)
			return
		}
		answers, err := decodeAnswers(body)
		if err != nil {
			l.broken(cn, err)
			return
		}
		done = done[:0]
		var overdue *call
		l.mu.Lock()
		for i := range answers {
			// An id not pending cannot be (answered twice, or never
			// asked): ignored.
			if c := cn.pending[answers[i].id]; c != nil {
				delete(cn.pending, c.id)
				done = append(done, settled{c, &answers[i]})
			}
		}
		if cn.pending != nil {
			now := time.Now()
			l.armLocked(cn, now)
			overdue = l.overdueLocked(cn, now)
		}
		var late string
		if overdue != nil {
			late = fmt.Sprintf("request %d (group %s) unanswered for %s while others were answered",
				overdue.id, overdue.group, time.Since(overdue.written).Round(time.Millisecond))
		}
		l.mu.Unlock()
		for i, s := range done {
			l.settle(s.c, s.a)
			done[i] = settled{}
		}
		if overdue != nil {
			l.b.log.Warn("append connection closed: an answer is missing", "peer", l.addr, "err", late)
			l.broken(cn, errors.New(late))
			return
		}
	}
}

// overdueLocked returns a request of cn written more than
// answerBound*Timeout ago, if there is one; it searches at most every
// Timeout/4. The read deadline catches a connection that falls silent,
// not one whose other requests are answered while one answer is missing
// (lost by a fault of the peer's): its group's pipeline would wait for
// that answer for ever.
func (l *link) overdueLocked(cn *conn, now time.Time) *call {
	if now.Sub(cn.checked) < l.b.opts.Timeout/4 {
		return nil
	}
	cn.checked = now
	for _, c := range cn.pending {
		if now.Sub(c.written) > answerBound*l.b.opts.Timeout {
			return c
		}
	}
	return nil
}

// answerBound is how many Timeouts a request may wait for its answer
// while others are answered. A peer's group answers each request within
// AnswerTimeout (Timeout/2) of taking it, and takes its requests one at a
// time, so a group that does not answer (busy restoring a snapshot) holds
// its queue for AnswerTimeout per request: a pipeline's two, those of a
// pipeline raft has just given up on, and a synchronous one, about five.
// Six Timeouts (a minute) leave room for that; a lost answer still ends.
const answerBound = 6

// settle hands c its answer.
func (l *link) settle(c *call, a *answer) {
	if a.err != "" {
		c.done(c, fmt.Errorf("%w: %s at %s: %s", ErrNoAnswer, c.group, l.addr, a.err))
		return
	}
	c.resp = a.resp
	c.done(c, nil)
}

// broken closes cn after err and fails its calls in flight, in the order
// they were written.
func (l *link) broken(cn *conn, err error) {
	l.mu.Lock()
	if l.mu.conn == cn {
		l.mu.conn = nil
	}
	pending := cn.pending
	cn.pending = nil
	l.mu.Unlock()
	_ = cn.c.Close()
	l.b.untrack(cn.c)
	if pending == nil {
		return // failed already
	}
	select {
	case <-l.b.closed:
		err = ErrClosed
	default:
		if !errors.Is(err, io.EOF) || len(pending) > 0 {
			l.b.log.Debug("append connection failed", "peer", l.addr, "in_flight", len(pending), "err", err)
		}
		err = fmt.Errorf("appends: connection to %s: %w", l.addr, err)
	}
	calls := make([]*call, 0, len(pending))
	for _, c := range pending {
		calls = append(calls, c)
	}
	slices.SortFunc(calls, func(a, b *call) int { return cmp.Compare(a.id, b.id) })
	for _, c := range calls {
		c.done(c, err)
	}
}
