package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Service is the RPC service that receives batches of heartbeats.
const Service = "raft.heartbeats"

// Caller calls a service of another node (the node's rpcmux.Mux).
type Caller interface {
	Call(ctx context.Context, addr, service string, req []byte) ([]byte, error)
}

// Errors, compared with errors.Is.
var (
	// ErrClosed: the Coalescer, or the group's transport, is closed.
	ErrClosed = fmt.Errorf("heartbeat: closed: %w", raft.ErrTransportShutdown)
	// ErrNoAnswer: the peer's group gave no answer to its heartbeat: it
	// is not open there, or did not answer in time.
	ErrNoAnswer = errors.New("heartbeat: no answer from the group")
)

// Options configure a Coalescer. The defaults suit hashicorp/raft's
// default heartbeat timeout (1 s) with a leader lease as long (the node's
// timings); set Wait and Interval in proportion for others.
type Options struct {
	// Interval is the shortest time between two batches to one peer
	// (default 500 ms: half the heartbeat timeout). It is above raft's
	// longest pause between two heartbeats of a group (HeartbeatTimeout/5),
	// so that every group has its next heartbeat in by then, and a
	// group's heartbeats are then Interval plus a round trip apart: half
	// the followers' shortest election timeout (HeartbeatTimeout) and of
	// the leader's lease, leaving as much again for a late batch.
	Interval time.Duration
	// Wait is the longest a heartbeat waits for the others of its batch
	// once Interval has passed (default 100 ms: raft's shortest pause
	// between two heartbeats of a group, HeartbeatTimeout/10, so that a
	// group that stopped leading, or one that starts, holds the others
	// back no longer than that).
	Wait time.Duration
	// Timeout bounds a batch's round trip (default 5 s: by then the
	// leader's lease and the followers' election timers have long run
	// out, and raft only needs to hear that the heartbeat failed).
	Timeout time.Duration
	// AnswerTimeout is how long the receiving side waits for a group that
	// did not answer at once (default 100 ms); the batch's answer then
	// reports it as not answering and goes, so that the other groups'
	// answers stay fresh.
	AnswerTimeout time.Duration
	// Logger receives the coalescer's logs (nil = slog.Default()).
	Logger *slog.Logger
}

// ForHeartbeatTimeout returns the Interval and Wait in proportion to the
// groups' raft HeartbeatTimeout (1/2 and 1/10 of it), for groups whose
// LeaderLeaseTimeout is as long as their heartbeat timeout.
func ForHeartbeatTimeout(hb time.Duration) Options {
	return Options{Interval: hb / 2, Wait: hb / 10}
}

// EnsureDefaults fills in the zero fields.
func (o *Options) EnsureDefaults() {
	def := ForHeartbeatTimeout(time.Second)
	if o.Interval <= 0 {
		o.Interval = def.Interval
	}
	if o.Wait <= 0 {
		o.Wait = def.Wait
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Coalescer is one node's heartbeat batcher, shared by all its Raft
// groups: it sends their heartbeats to each peer node in batches (Wrap)
// and serves the batches peers send (Serve). It is safe for concurrent
// use.
type Coalescer struct {
	call Caller
	opts Options
	log  *slog.Logger

	// ctx is cancelled by Close: batches in flight fail.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // batches in flight
	once   sync.Once

	// mu guards what follows, the peers' queues included. It is never
	// held across network I/O or a group's heartbeat handler.
	mu struct {
		sync.Mutex
		closed bool
		peers  map[string]*peer // by the peer's address
		groups map[string]*Transport
	}
}

// peer holds the heartbeats on their way to one peer node. Its fields are
// guarded by Coalescer.mu.
type peer struct {
	addr  string
	queue []*beat
	// expect lists the groups of the last batch sent: once each has a
	// heartbeat queued, the batch is complete.
	expect []string
	first  time.Time // when the first heartbeat of queue was queued
	sent   time.Time // when the last batch went
	timer  *time.Timer
	at     time.Time // when timer fires; zero while none is armed
	gen    uint64    // counts batches, so that a stale timer does nothing
}

// beat is a heartbeat waiting for its answer.
type beat struct {
	group string
	t     *Transport
	req   *raft.AppendEntriesRequest
	done  chan result // capacity 1, sent to once
}

type result struct {
	resp raft.AppendEntriesResponse
	err  error
}

// New returns a Coalescer that sends batches through call. Register its
// Serve for Service on the node's mux, so that peers reach it.
func New(call Caller, opts Options) *Coalescer {
	opts.EnsureDefaults()
	c := &Coalescer{call: call, opts: opts, log: opts.Logger.With("component", "heartbeat")}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.peers = make(map[string]*peer)
	c.mu.groups = make(map[string]*Transport)
	return c
}

// Close fails the heartbeats waiting for a batch, aborts the batches in
// flight and waits for them. The transports of the groups fail their
// heartbeats from then on. Later calls return nil.
func (c *Coalescer) Close() error {
	c.once.Do(func() {
		var waiting []*beat
		c.mu.Lock()
		c.mu.closed = true
		for _, p := range c.mu.peers {
			waiting = append(waiting, p.queue...)
			p.queue = nil
			if p.timer != nil {
				p.timer.Stop()
			}
		}
		c.mu.Unlock()
		for _, b := range waiting {
			b.done <- result{err: ErrClosed}
		}
		c.cancel()
		c.wg.Wait()
	})
	return nil
}

// send queues a heartbeat for the peer at addr and waits for its answer.
func (c *Coalescer) send(t *Transport, addr string, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	b := &beat{group: t.group, t: t, req: req, done: make(chan result, 1)}
	batch, err := c.enqueue(addr, b)
	if err != nil {
		return err
	}
	if batch != nil {
		// b completed the batch: send it from here.
		c.flush(addr, batch)
	}
	select {
	case r := <-b.done:
		if r.err != nil {
			return r.err
		}
		*resp = r.resp
		return nil
	case <-t.closed:
		return ErrClosed
	}
}

// enqueue adds b to its peer's queue, and returns the batch to send if it
// is due now; otherwise it arms the peer's timer for when it is due
// (dueLocked).
func (c *Coalescer) enqueue(addr string, b *beat) ([]*beat, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil, ErrClosed
	}
	p := c.mu.peers[addr]
	if p == nil {
		p = &peer{addr: addr}
		c.mu.peers[addr] = p
	}
	now := time.Now()
	if len(p.queue) == 0 {
		p.first = now
	}
	p.queue = append(p.queue, b)
	at := c.dueLocked(p)
	if !at.After(now) {
		return c.takeLocked(p, now), nil
	}
	if !at.Equal(p.at) {
		if p.timer != nil {
			p.timer.Stop()
		}
		gen := p.gen
		p.at = at
		p.timer = time.AfterFunc(at.Sub(now), func() { c.due(p, gen) })
	}
	return nil, nil
}

// dueLocked is when p's queued heartbeats are to go: Interval after the
// last batch, once every group of that batch has its heartbeat in;
// otherwise Wait after the first was queued, but not before Interval.
func (c *Coalescer) dueLocked(p *peer) time.Time {
	earliest := p.sent.Add(c.opts.Interval)
	if p.completeLocked() {
		return earliest
	}
	return later(earliest, p.first.Add(c.opts.Wait))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// due sends p's batch when its timer fires, unless it went already.
func (c *Coalescer) due(p *peer, gen uint64) {
	c.mu.Lock()
	if c.mu.closed || p.gen != gen || len(p.queue) == 0 {
		c.mu.Unlock()
		return
	}
	batch := c.takeLocked(p, time.Now())
	c.mu.Unlock()
	c.flush(p.addr, batch)
}

// completeLocked reports whether every group of the last batch has a
// heartbeat queued.
func (p *peer) completeLocked() bool {
	if len(p.expect) == 0 {
		return false
	}
	for _, g := range p.expect {
		if !slices.ContainsFunc(p.queue, func(b *beat) bool { return b.group == g }) {
			return false
		}
	}
	return true
}

// takeLocked empties p's queue into a batch and counts the batch in
// flight (c.wg).
func (c *Coalescer) takeLocked(p *peer, now time.Time) []*beat {
	batch := p.queue
	p.queue = nil
	p.gen++
	p.sent = now
	if p.timer != nil {
		p.timer.Stop()
		p.timer, p.at = nil, time.Time{}
	}
	p.expect = p.expect[:0]
	for _, b := range batch {
		p.expect = append(p.expect, b.group)
	}
	c.wg.Add(1)
	return batch
}

// flush sends a batch to the peer at addr and hands each heartbeat its
// group's answer.
func (c *Coalescer) flush(addr string, batch []*beat) {
	defer c.wg.Done()
	items := make([]item, len(batch))
	for i, b := range batch {
		items[i] = item{group: b.group, req: *b.req}
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	out, err := c.call.Call(ctx, addr, Service, appendBatch(nil, items))
	var answers []answer
	if err == nil {
		answers, err = decodeAnswers(out)
		if err == nil && len(answers) != len(batch) {
			err = fmt.Errorf("%w: %d answers to %d heartbeats", errMalformed, len(answers), len(batch))
		}
	}
	if err != nil {
		if c.ctx.Err() != nil {
			err = ErrClosed
		} else {
			// Raft logs each group's failed heartbeat; this says why.
			c.log.Debug("heartbeat batch failed", "peer", addr, "heartbeats", len(batch), "err", err)
		}
		err = fmt.Errorf("heartbeat: batch of %d to %s: %w", len(batch), addr, err)
		for _, b := range batch {
			b.done <- result{err: err}
		}
		return
	}
	for i, b := range batch {
		if a := answers[i]; a.err != "" {
			b.done <- result{err: fmt.Errorf("%w: %s at %s: %s", ErrNoAnswer, b.group, addr, a.err)}
		} else {
			b.done <- result{resp: a.resp}
		}
	}
}

// forget drops t's queued heartbeats (its transport closed).
func (c *Coalescer) forget(t *Transport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.groups[t.group] == t {
		delete(c.mu.groups, t.group)
	}
	for _, p := range c.mu.peers {
		p.queue = slices.DeleteFunc(p.queue, func(b *beat) bool { return b.t == t })
	}
}

// Serve answers a batch of heartbeats from node from: it hands each to
// its group's heartbeat handler and answers with every group's response,
// in the batch's order. A group not open here, or that has not answered
// within AnswerTimeout, is answered with an error; the others are not
// held up. Register it for Service on the node's mux.
func (c *Coalescer) Serve(ctx context.Context, from string, req []byte) ([]byte, error) {
	items, err := decodeBatch(req)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: batch from %s: %w", from, err)
	}
	answers := make([]answer, len(items))
	waiting := make([]chan raft.RPCResponse, len(items))
	// The handlers run in turn: raft's answers before it returns (it
	// never waits on the network, and writes its stable store only when
	// a heartbeat brings a newer term).
	for i := range items {
		fn := c.handler(items[i].group)
		if fn == nil {
			answers[i].err = fmt.Sprintf("group %s is not open on this node", items[i].group)
			continue
		}
		ch := make(chan raft.RPCResponse, 1)
		waiting[i] = ch
		fn(raft.RPC{Command: &items[i].req, RespChan: ch})
	}
	var deadline <-chan time.Time
	for i, ch := range waiting {
		if ch == nil {
			continue
		}
		var r raft.RPCResponse
		select {
		case r = <-ch:
		default:
			if deadline == nil {
				t := time.NewTimer(c.opts.AnswerTimeout)
				defer t.Stop()
				deadline = t.C
			}
			select {
			case r = <-ch:
			case <-deadline:
				answers[i].err = fmt.Sprintf("group %s did not answer within %s", items[i].group, c.opts.AnswerTimeout)
				// Later groups get no more time than this one.
				closed := make(chan time.Time)
				close(closed)
				deadline = closed
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		answers[i] = toAnswer(items[i].group, r)
	}
	return appendAnswers(nil, answers), nil
}

// toAnswer turns a group's response into its answer.
func toAnswer(group string, r raft.RPCResponse) answer {
	if r.Error != nil {
		return answer{err: r.Error.Error()}
	}
	resp, ok := r.Response.(*raft.AppendEntriesResponse)
	if !ok || resp == nil {
		return answer{err: fmt.Sprintf("group %s answered a heartbeat with %T", group, r.Response)}
	}
	return answer{resp: *resp}
}

// handler returns the heartbeat handler of the group named group here
// (nil if it is not open or has none).
func (c *Coalescer) handler(group string) func(raft.RPC) {
	c.mu.Lock()
	t := c.mu.groups[group]
	c.mu.Unlock()
	if t == nil {
		return nil
	}
	return t.heartbeatHandler()
}
