package appends

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// incoming is an append from a peer, waiting for its group.
type incoming struct {
	id  uint64
	req *raft.AppendEntriesRequest
	to  *serverConn // where the answer goes
}

// serverConn is the receiving side of one peer's connection: its reader
// (serveConn) hands each request to its group, and writeAnswers writes
// the answers back, whatever is ready in one frame.
type serverConn struct {
	b    *Batcher
	c    net.Conn
	wake chan struct{} // capacity 1: an answer is ready
	done chan struct{} // closed when the reader stops

	// mu guards answers: ready, not written yet.
	mu      sync.Mutex
	answers []answer
}

// serveConn serves the requests on c, a connection a peer opened, until
// it fails or the Batcher closes.
func (b *Batcher) serveConn(c net.Conn) {
	defer b.wg.Done()
	sc := &serverConn{b: b, c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.wg.Add(1)
	go sc.writeAnswers()
	defer func() {
		close(sc.done)
		_ = c.Close()
		b.untrack(c)
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		body, err := readFrame(r)
		if err != nil {
			select {
			case <-b.closed:
			default:
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					b.log.Debug("append connection failed", "from", c.RemoteAddr().String(), "err", err)
				}
			}
			return
		}
		reqs, err := decodeRequests(body)
		if err != nil {
			b.log.Warn("append connection closed", "from", c.RemoteAddr().String(), "err", err)
			return
		}
		for i := range reqs {
			q := &reqs[i]
			if t := b.group(q.group); t != nil {
				t.receive(incoming{id: q.id, req: &q.req, to: sc})
			} else {
				sc.answer(answer{id: q.id, err: fmt.Sprintf("group %s is not open on this node", q.group)})
			}
		}
	}
}

// answer queues a for the peer; dropped once the connection is gone.
func (sc *serverConn) answer(a answer) {
	select {
	case <-sc.done:
		return
	default:
	}
	sc.mu.Lock()
	sc.answers = append(sc.answers, a)
	sc.mu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// writeAnswers writes the answers as they become ready until the
// connection closes.
func (sc *serverConn) writeAnswers() {
	defer sc.b.wg.Done()
	var buf []byte
	var batch []answer
	var armed time.Time // when the write deadline was last set
	for {
		select {
		case <-sc.wake:
		case <-sc.done:
			return
		}
		// The groups' log writes share one fsync, so their answers come
		// together: let the others that are ready queue theirs first.
		runtime.Gosched()
		sc.mu.Lock()
		batch, sc.answers = sc.answers, batch[:0]
		sc.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		b, at := beginFrame(buf[:0])
		buf = endFrame(appendAnswers(b, batch), at)
		clear(batch)
		if now := time.Now(); rearm(armed, now, sc.b.opts.Timeout) {
			_ = sc.c.SetWriteDeadline(now.Add(sc.b.opts.Timeout))
			armed = now
		}
		sc.b.answerFrames.Add(1)
		sc.b.answers.Add(int64(len(batch)))
		if _, err := sc.c.Write(buf); err != nil {
			_ = sc.c.Close() // the reader stops too
			return
		}
	}
}

// receive queues an append from a peer for the group; a closed group's
// is answered at once. (serve takes what is queued, under the same lock,
// once the transport is closed.)
func (t *Transport) receive(in incoming) {
	t.in.Lock()
	select {
	case <-t.closed:
		t.in.Unlock()
		in.to.answer(answer{id: in.id, err: ErrClosed.Error()})
		return
	default:
	}
	t.in.queue = append(t.in.queue, in)
	t.in.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// serve hands the appends from peers to raft, one at a time and in the
// order they came (as the group's own transport does with each
// connection's requests), until the transport closes.
func (t *Transport) serve() {
	defer t.wg.Done()
	// One ticker, not a timer per append: a request times out at the
	// first tick at least AnswerTimeout/2 after it was handed over, so
	// between AnswerTimeout/2 and AnswerTimeout after.
	tick := time.NewTicker(t.b.opts.AnswerTimeout / 2)
	defer tick.Stop()
	var batch []incoming
	for {
		select {
		case <-t.wake:
		case <-t.closed:
			t.in.Lock()
			batch, t.in.queue = t.in.queue, nil
			t.in.Unlock()
			for _, in := range batch {
				in.to.answer(answer{id: in.id, err: ErrClosed.Error()})
			}
			return
		}
		t.in.Lock()
		batch, t.in.queue = t.in.queue, batch[:0]
		t.in.Unlock()
		for i := range batch {
			t.handle(batch[i], tick.C)
			batch[i] = incoming{}
		}
	}
}

// handle hands one append to raft and queues raft's answer, or an error
// if raft does not take it and answer by the first tick at least
// AnswerTimeout/2 after it began. Ticks are counted by the clock, not by
// number: the ticker keeps one tick while serve is idle, which the next
// append would otherwise count as its first, and time out at the next
// (after no time at all).
func (t *Transport) handle(in incoming, tick <-chan time.Time) {
	select {
	case <-in.to.done:
		// The connection it came on is gone, and its sender failed it
		// already (raft sends it again): handing it to raft would only
		// hold back the requests of the connection that replaced it.
		return
	default:
	}
	a := answer{id: in.id}
	defer func() { in.to.answer(a) }()
	ch := make(chan raft.RPCResponse, 1)
	start := time.Now()
	late := func() bool { return time.Since(start) >= t.b.opts.AnswerTimeout/2 }
	rpc := raft.RPC{Command: in.req, RespChan: ch}
	for sent := false; !sent; {
		select {
		case t.rpcs <- rpc:
			sent = true
		case <-tick:
			if late() {
				a.err = fmt.Sprintf("group %s did not take the append within %s", t.group, t.b.opts.AnswerTimeout)
				return
			}
		case <-t.closed:
			a.err = ErrClosed.Error()
			return
		}
	}
	for {
		select {
		case r := <-ch:
			switch resp, ok := r.Response.(*raft.AppendEntriesResponse); {
			case r.Error != nil:
				a.err = r.Error.Error()
			case !ok || resp == nil:
				a.err = fmt.Sprintf("group %s answered an append with %T", t.group, r.Response)
			default:
				a.resp = *resp
			}
			return
		case <-tick:
			if late() {
				a.err = fmt.Sprintf("group %s did not answer within %s", t.group, t.b.opts.AnswerTimeout)
				return
			}
		case <-t.closed:
			a.err = ErrClosed.Error()
			return
		}
	}
}
