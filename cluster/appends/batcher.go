package appends

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Channel is the rpcmux stream channel that carries the batches.
const Channel = "raft.appends"

// Errors, compared with errors.Is.
var (
	// ErrClosed: the Batcher, or the group's transport, is closed.
	ErrClosed = fmt.Errorf("appends: closed: %w", raft.ErrTransportShutdown)
	// ErrNoAnswer: the peer's group gave no answer: it is not open
	// there, or did not answer in time.
	ErrNoAnswer = errors.New("appends: no answer from the group")
	// ErrUnreachable: the peer node could not be dialed for DialHold.
	ErrUnreachable = errors.New("appends: the peer cannot be reached")
)

// Options configure a Batcher.
type Options struct {
	// Timeout bounds writing a frame, and waiting for answers while
	// requests are in flight (default 10 s, the groups' own transports'
	// timeout): a connection that stays silent that long (from 3/4 of it
	// on: deadlines are moved at most every Timeout/4) is closed and its
	// requests fail.
	Timeout time.Duration
	// DialTimeout bounds connecting to a peer (default 2 s: peers are on
	// one network, a slower connect is a fault to report).
	DialTimeout time.Duration
	// DialHold is how long the requests queued for a peer that cannot be
	// reached wait for it before they fail (default 1 s; dialed again
	// every DialHold/10; negative: they fail at the first failed dial).
	// Raft waits before its next request to a follower after each failed
	// one, twice as long each time up to 10 s: failed at once, the
	// requests to a follower down for ten seconds left its leader
	// waiting up to ten more seconds once it was back. Held, they fail
	// about once a second, and a follower that restarts is reached
	// within DialHold/10.
	DialHold time.Duration
	// PeerHold is how long a group's synchronous append to a peer that
	// cannot be reached is sent again, DialHold after DialHold, before it
	// fails, unless the group is released (Release) or closed (default
	// 60 s, none when DialHold is negative; negative: it fails after one
	// DialHold). Failed every DialHold, a follower down for a minute had
	// made raft wait 10 s between its requests, and the follower caught
	// up that much later once back; held, raft counts one failure a
	// minute, and a follower back within minutes is reached within
	// DialHold/10.
	PeerHold time.Duration
	// AnswerTimeout is how long the receiving side waits for a group to
	// take and answer one request (default Timeout/2; a ticker of half
	// of it checks, so a request fails between AnswerTimeout/2 and
	// AnswerTimeout): the request is then answered with an error, before
	// the sender gives up on the whole connection.
	AnswerTimeout time.Duration
	// MaxInFlight is how many requests a group's pipeline to one peer has
	// in flight at most (default 2, as raft's NetworkTransport: the
	// follower handles a group's requests one at a time anyway).
	MaxInFlight int
	// MaxFrame is the size past which the requests queued for a peer are
	// split over several frames (default 1 MiB), so that one group's
	// large append does not hold back the others' for long.
	MaxFrame int
	// Supports tells whether the peer at an RPC address takes batched
	// appends (it announces the feature); appends to a peer that does
	// not go through the group's own transport, as without a Batcher.
	// Nil: every peer does.
	Supports func(target string) bool
	// Logger receives the batcher's logs (nil = slog.Default()).
	Logger *slog.Logger
}

// EnsureDefaults fills in the zero fields.
func (o *Options) EnsureDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.DialHold == 0 {
		o.DialHold = time.Second
	}
	if o.PeerHold == 0 && o.DialHold > 0 {
		o.PeerHold = time.Minute
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = o.Timeout / 2
	}
	if o.MaxInFlight < 1 {
		o.MaxInFlight = 2
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Batcher is one node's AppendEntries batcher, shared by all its Raft
// groups: it sends their appends to each peer node over one connection
// (Wrap), and hands the appends peers send to the groups. It is safe for
// concurrent use.
type Batcher struct {
	layer raft.StreamLayer
	opts  Options
	log   *slog.Logger

	closed chan struct{} // closed by Close
	wg     sync.WaitGroup
	once   sync.Once

	// Counts for Stats.
	frames, requests, answerFrames, answers atomic.Int64

	// mu guards what follows. It is never held across network I/O or a
	// hand-off to a group.
	mu struct {
		sync.Mutex
		closed bool
		links  map[string]*link      // sending side, by peer address
		groups map[string]*Transport // receiving side, by group name
		conns  map[net.Conn]struct{} // every open connection, both sides
	}
}

// New returns a Batcher that dials peers and accepts their connections
// through layer (the node's rpcmux stream channel Channel), and starts
// accepting.
func New(layer raft.StreamLayer, opts Options) *Batcher {
	opts.EnsureDefaults()
	b := &Batcher{layer: layer, opts: opts, log: opts.Logger.With("component", "appends"), closed: make(chan struct{})}
	b.mu.links = make(map[string]*link)
	b.mu.groups = make(map[string]*Transport)
	b.mu.conns = make(map[net.Conn]struct{})
	b.wg.Add(1)
	go b.accept()
	return b
}

// Stats counts what a Batcher sent.
type Stats struct {
	Frames       int64 // frames of requests written
	Requests     int64 // requests in them
	AnswerFrames int64 // frames of answers written
	Answers      int64 // answers in them
}

// Stats returns what the Batcher sent so far.
func (b *Batcher) Stats() Stats {
	return Stats{Frames: b.frames.Load(), Requests: b.requests.Load(),
		AnswerFrames: b.answerFrames.Load(), Answers: b.answers.Load()}
}

// Close stops accepting, closes every connection (the requests in flight
// fail) and waits for the Batcher's goroutines. The groups' transports
// fail their appends from then on. Later calls return nil.
func (b *Batcher) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.mu.closed = true
		conns := make([]net.Conn, 0, len(b.mu.conns))
		for c := range b.mu.conns {
			conns = append(conns, c)
		}
		links := make([]*link, 0, len(b.mu.links))
		for _, l := range b.mu.links {
			links = append(links, l)
		}
		b.mu.Unlock()
		close(b.closed)
		_ = b.layer.Close()
		for _, c := range conns {
			_ = c.Close()
		}
		for _, l := range links {
			l.failQueued(ErrClosed)
		}
		b.wg.Wait()
		st := b.Stats()
		b.log.Info("append batcher closed", "requests", st.Requests, "request_frames", st.Frames,
			"answers", st.Answers, "answer_frames", st.AnswerFrames)
	})
	return nil
}

// track records an open connection, so that Close closes it; false if
// the Batcher is closed (the caller closes c).
func (b *Batcher) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.closed {
		return false
	}
	b.mu.conns[c] = struct{}{}
	return true
}

func (b *Batcher) untrack(c net.Conn) {
	b.mu.Lock()
	delete(b.mu.conns, c)
	b.mu.Unlock()
}

// link returns the sending side to the peer at addr, started on first
// use; nil once the Batcher is closed.
func (b *Batcher) link(addr string) *link {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.closed {
		return nil
	}
	l := b.mu.links[addr]
	if l == nil {
		l = newLink(b, addr)
		b.mu.links[addr] = l
		b.wg.Add(1)
		go l.run()
	}
	return l
}

// group returns the transport of the group named name here, nil if it is
// not open.
func (b *Batcher) group(name string) *Transport {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.groups[name]
}

// accept serves the connections peers open until the Batcher closes.
func (b *Batcher) accept() {
	defer b.wg.Done()
	for {
		c, err := b.layer.Accept()
		if err != nil {
			select {
			case <-b.closed:
			default:
				b.log.Warn("accepting append connections stopped", "err", err)
			}
			return
		}
		if !b.track(c) {
			_ = c.Close()
			return
		}
		b.wg.Add(1)
		go b.serveConn(c)
	}
}
