package shared

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// group is one consumer group. Everything below "owned by run" is touched
// only by the group's goroutine; other goroutines post closures.
type group struct {
	m       *Manager
	key     groupKey
	meta    groupMeta
	opts    GroupOptions
	start   Position
	created time.Time
	log     *slog.Logger
	kv      ProgressStore
	epoch   uint64 // of the ownership the group runs under (Options.Owner)

	inbox    inbox
	data     chan struct{} // capacity 1: a source stream has new records
	quit     chan struct{}
	quitOnce sync.Once
	finished chan struct{}

	// owned by run
	cursors   map[string]*cursor
	order     []*cursor // reading order (round-robin over streams)
	readNext  int
	members   []*member
	rr        int
	buffer    []*pending // read, not yet delivered, in stream order
	redeliver []*pending // released, to deliver again first
	assigned  int        // records waiting in members' hash queues
	inflight  deadlines
	watchers  map[string]chan struct{} // per cursor: closed to stop its watcher
	flushing  bool                     // a progress write is in progress
	counters  counters
}

type counters struct {
	delivered, acked, redelivered, deadLettered, rejected, skipped int64
}

// inbox is a mutex-guarded queue of closures for the group goroutine;
// posting never blocks, so hooks and the store's committer can post.
type inbox struct {
	mu   sync.Mutex
	fns  []func()
	wake chan struct{}
}

func (b *inbox) post(fn func()) {
	b.mu.Lock()
	b.fns = append(b.fns, fn)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *inbox) take(spare []func()) []func() {
	b.mu.Lock()
	fns := b.fns
	b.fns = spare[:0]
	b.mu.Unlock()
	return fns
}

func newGroup(m *Manager, k groupKey, meta groupMeta, start Position) *group {
	g := &group{
		m: m, key: k, meta: meta, opts: meta.options(), start: start, created: meta.Created,
		log:      m.log.With("group", k.name, "filter", k.filter),
		kv:       m.kv,
		data:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		finished: make(chan struct{}),
		cursors:  map[string]*cursor{},
		watchers: map[string]chan struct{}{},
	}
	g.inbox.wake = make(chan struct{}, 1)
	return g
}

func (g *group) post(fn func()) { g.inbox.post(fn) }

func (g *group) stop() { g.quitOnce.Do(func() { close(g.quit) }) }

func (g *group) poke() {
	select {
	case g.data <- struct{}{}:
	default:
	}
}

// tickInterval is how often deadlines and progress are checked.
func (g *group) tickInterval() time.Duration {
	return min(max(g.opts.AckTimeout/10, 5*time.Millisecond), g.m.opts.FlushInterval, time.Second)
}

func (g *group) run() {
	defer close(g.finished)
	if err := g.loadCursors(); err != nil {
		g.log.Error("loading group progress failed; the group is stopped", "error", err)
		return
	}
	g.refreshSources()
	t := time.NewTicker(g.tickInterval())
	defer t.Stop()
	var fns []func()
	lastFlush := time.Now()
	for {
		select {
		case <-g.quit:
			g.shutdown()
			return
		case <-g.inbox.wake:
			fns = g.inbox.take(fns)
			for i, fn := range fns {
				fn()
				fns[i] = nil
			}
		case <-g.data:
		case now := <-t.C:
			g.expire(now)
			if now.Sub(lastFlush) >= g.m.opts.FlushInterval {
				g.flush(nil)
				lastFlush = now
			}
		}
		g.pump()
	}
}

// loadCursors restores persisted progress.
func (g *group) loadCursors() error {
	prefix := cursorPrefix(g.key)
	return g.kv.Scan(prefix, func(k, v []byte) error {
		stream := string(k[len(prefix):])
		c, err := decodeCursor(stream, v)
		if err != nil {
			return fmt.Errorf("stream %q: %w", stream, err)
		}
		g.addCursor(c)
		return nil
	})
}

func (g *group) addCursor(c *cursor) {
	if info, err := g.m.opts.Store.DescribeStream(c.stream); err == nil {
		c.created = info.CreatedAt
		if info.NextOffset > c.next {
			c.next = info.NextOffset
			c.nextSeen.Store(c.next)
		}
	}
	g.cursors[c.stream] = c
	g.order = append(g.order, c)
	stop := make(chan struct{})
	g.watchers[c.stream] = stop
	go g.watch(c, stop)
}

// watch follows a stream's committed offset and pokes the group on growth.
func (g *group) watch(c *cursor, stop chan struct{}) {
	store := g.m.opts.Store
	for {
		ch, next, err := store.Notify(c.stream)
		if err != nil {
			if !errors.Is(err, streams.ErrStreamNotFound) {
				return
			}
			// Asked again before the group drops its progress on the
			// stream (and starts it over if it comes back): in cluster
			// mode the answer may have come from a replica leaving the
			// shard. The same stream (its creation time) still there
			// is watched on.
			select {
			case <-time.After(notFoundRecheck):
			case <-stop:
				return
			case <-g.quit:
				return
			}
			if info, err := store.DescribeStream(c.stream); err == nil && !c.created.IsZero() && info.CreatedAt.Equal(c.created) {
				g.log.Warn("a source stream reported missing is there; the group goes on reading it", "stream", c.stream)
				continue
			}
			g.post(func() { g.removeCursor(c) })
			return
		}
		c.nextSeen.Store(next)
		g.poke()
		select {
		case <-ch:
		case <-stop:
			return
		case <-g.quit:
			return
		}
	}
}

// notFoundRecheck is how long after a source stream was reported missing
// the group asks again before it drops the stream's cursor (watch).
const notFoundRecheck = 500 * time.Millisecond

// refreshSources adds cursors for source streams that appeared and drops
// those of deleted streams.
func (g *group) refreshSources() {
	now := g.m.opts.Now()
	for _, name := range g.m.sourceStreams(g.key.filter) {
		if _, ok := g.cursors[name]; ok {
			continue
		}
		c := g.m.startCursor(name, g.start, g.created, now)
		c.dirty = true
		g.addCursor(c)
		g.log.Debug("group reads a new stream", "stream", name, "from", c.floor)
	}
}

func (g *group) removeCursor(c *cursor) {
	if g.cursors[c.stream] != c {
		return
	}
	delete(g.cursors, c.stream)
	for i, o := range g.order {
		if o == c {
			g.order = append(g.order[:i], g.order[i+1:]...)
			break
		}
	}
	if stop, ok := g.watchers[c.stream]; ok {
		close(stop)
		delete(g.watchers, c.stream)
	}
	c.gone = true
	g.dropPending(c)
	g.kv.Submit([]streams.KVWrite{{Key: cursorKey(g.key, c.stream), Delete: true}}, true, nil)
	g.log.Info("source stream deleted; group stops reading it", "stream", c.stream)
}

// dropPending forgets buffered and queued records of a cursor and marks its
// in-flight deliveries stale.
func (g *group) dropPending(c *cursor) {
	keep := func(ps []*pending) []*pending {
		out := ps[:0]
		for _, p := range ps {
			if p.cur != c {
				out = append(out, p)
			}
		}
		return out
	}
	g.buffer = keep(g.buffer)
	g.redeliver = keep(g.redeliver)
	for _, m := range g.members {
		before := len(m.queue)
		m.queue = keep(m.queue)
		g.assigned -= before - len(m.queue)
		for p := range m.inflight {
			if p.cur == c {
				p.stale = true
			}
		}
	}
}

// join adds a member.
func (g *group) join(m *member) {
	if m.left {
		return // left before it joined
	}
	g.members = append(g.members, m)
	g.log.Debug("member joined", "client", m.id, "window", m.window, "qos", m.qos)
}

// leave removes a member and releases everything it holds at once.
func (g *group) leave(m *member) {
	if m.left {
		return
	}
	m.left = true
	for i, o := range g.members {
		if o == m {
			g.members = append(g.members[:i], g.members[i+1:]...)
			break
		}
	}
	// Records queued for it (never sent) go back first, in order.
	if len(m.queue) > 0 {
		g.assigned -= len(m.queue)
		g.redeliver = append(append([]*pending(nil), m.queue...), g.redeliver...)
		m.queue = nil
	}
	released := 0
	for p := range m.inflight {
		g.withdraw(m, p)
		if !p.stale {
			g.release(p, "member disconnected")
			released++
		}
	}
	g.log.Debug("member left", "client", m.id, "released", released)
}

// withdraw takes an in-flight delivery back from its member: the member's
// transport forgets it (so it is never resent there) and frees its place
// in the client's window.
func (g *group) withdraw(m *member, p *pending) {
	delete(m.inflight, p)
	g.inflight.remove(p)
	if p.cancel != nil {
		p.cancel()
		p.cancel = nil
	}
	p.member = nil
}

// ack handles the end of delivery attempt n of p to m: a PUBACK/PUBCOMP,
// a negative PUBACK/PUBREC (reason >= 0x80), or a packet too large for the
// client.
func (g *group) ack(m *member, p *pending, n uint16, reason byte) {
	if p.member != m || p.count != n {
		return // withdrawn meanwhile (timeout, leave, seek)
	}
	delete(m.inflight, p)
	g.inflight.remove(p)
	p.member, p.cancel = nil, nil
	if p.stale {
		return
	}
	if reason >= 0x80 {
		g.counters.rejected++
		g.release(p, fmt.Sprintf("rejected by %s with reason 0x%02x", m.id, reason))
		return
	}
	m.acked++
	g.counters.acked++
	p.cur.markDone(p.rec.Offset)
}

// expire redelivers deliveries whose ack timeout passed.
func (g *group) expire(now time.Time) {
	for _, p := range g.inflight.expired(now) {
		m := p.member
		g.withdraw(m, p)
		if !p.stale {
			g.log.Debug("ack timeout", "client", m.id, "stream", p.cur.stream, "offset", p.rec.Offset, "deliveries", p.count)
			g.release(p, "ack timeout")
		}
	}
}

// release queues a record for redelivery, or dead-letters it once it was
// delivered MaxDeliveries times.
func (g *group) release(p *pending, why string) {
	if g.opts.MaxDeliveries > 0 && int(p.count) >= g.opts.MaxDeliveries {
		g.deadLetter(p, fmt.Sprintf("delivered %d times without an ack (last: %s)", p.count, why))
		return
	}
	g.redeliver = append(g.redeliver, p)
}

// seek moves cursors to a position.
func (g *group) seek(stream string, pos Position) error {
	if stream != "" {
		if _, ok := g.cursors[stream]; !ok {
			return fmt.Errorf("%w: group %s does not read stream %q", ErrGroupNotFound, g.key, stream)
		}
	}
	for name, c := range g.cursors {
		if stream != "" && name != stream {
			continue
		}
		info, err := g.m.opts.Store.DescribeStream(name)
		if err != nil {
			continue
		}
		off := g.m.positionOffset(name, info, pos, g.m.opts.Now())
		g.dropPending(c)
		c.seek(off)
		c.next = info.NextOffset
		g.log.Info("group seeked", "stream", name, "offset", off, "position", pos.String())
	}
	g.flush(nil)
	return nil
}

// flush persists changed cursors (one KV batch through the group commit).
// done, if not nil, is called on the group goroutine once it is durable.
func (g *group) flush(done func(error)) {
	if g.flushing && done == nil {
		return // the previous write is still committing; its successor comes next tick
	}
	var writes []streams.KVWrite
	for _, c := range g.cursors {
		if c.dirty {
			writes = append(writes, streams.KVWrite{Key: cursorKey(g.key, c.stream), Value: c.encode()})
			c.dirty = false
		}
	}
	if len(writes) == 0 {
		if done != nil {
			done(nil)
		}
		return
	}
	g.flushing = true
	acked := g.counters.acked
	err := g.kv.Submit(writes, false, func(err error) {
		g.post(func() {
			g.flushing = false
			if err != nil {
				g.log.Error("persisting group progress failed; will retry", "error", err)
				for _, c := range g.cursors {
					c.dirty = true
				}
			} else if g.m.opts.OnPersist != nil {
				g.m.opts.OnPersist(g.key.name, g.key.filter, acked)
			}
			if done != nil {
				done(err)
			}
		})
	})
	if err != nil {
		g.flushing = false
		for _, c := range g.cursors {
			c.dirty = true
		}
		if done != nil {
			done(err)
		}
	}
}

// shutdown persists progress and releases members' reservations.
func (g *group) shutdown() {
	for _, m := range append([]*member(nil), g.members...) {
		for p := range m.inflight {
			g.withdraw(m, p)
		}
	}
	for _, stop := range g.watchers {
		close(stop)
	}
	done := make(chan error, 1)
	g.flushing = false
	g.flush(func(err error) { done <- err })
	// The completion is posted to the inbox: run it here.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-done:
			if err != nil {
				g.log.Error("final progress write failed", "error", err)
			}
			return
		case <-g.inbox.wake:
			for _, fn := range g.inbox.take(nil) {
				fn()
			}
		case <-deadline:
			g.log.Error("final progress write timed out")
			return
		}
	}
}

// newMember builds a member's state: its window is the client's Receive
// Maximum (MQTT 5) or the group's Window (MQTT 3.1.1), capped by MaxWindow.
func (g *group) newMember(out Member) *member {
	window := out.ReceiveMaximum()
	if window <= 0 {
		window = g.opts.Window
	}
	window = min(window, g.opts.MaxWindow)
	return &member{
		out: out, id: out.ClientID(), qos: out.QoS(), window: window, joinedAt: g.m.opts.Now(),
		inflight: map[*pending]struct{}{},
	}
}

// deadLetterStream is the dead-letter stream name for this group.
func (g *group) deadLetterStream() string {
	name := strings.Map(func(r rune) rune {
		if r == ' ' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, g.key.name)
	return strings.ReplaceAll(g.opts.DeadLetter, "{group}", name)
}

// stats returns a snapshot computed on the group goroutine.
func (g *group) stats(ctx context.Context) (GroupStats, error) {
	res := make(chan GroupStats, 1)
	g.post(func() { res <- g.snapshot() })
	select {
	case st := <-res:
		return st, nil
	case <-ctx.Done():
		return GroupStats{}, ctx.Err()
	case <-g.finished:
		return GroupStats{}, fmt.Errorf("%w: %s", ErrGroupNotFound, g.key)
	}
}
