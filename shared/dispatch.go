package shared

import (
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// readBatch is the most records read from a stream at once.
const readBatch = 256

// pump delivers as much as the members' windows allow.
func (g *group) pump() {
	if len(g.members) == 0 {
		return
	}
	hashed := g.opts.Strategy == HashTopic || g.opts.Strategy == HashClient
	for {
		if hashed {
			g.drainQueues()
		}
		p := g.next()
		if p == nil {
			return
		}
		if hashed && p.count == 0 {
			m := g.hashMember(p)
			if len(m.queue) == 0 && m.room() > 0 {
				if !g.deliver(m, p) {
					return
				}
			} else {
				m.queue = append(m.queue, p)
				g.assigned++
				if g.assigned >= g.opts.ReadAhead {
					return
				}
			}
			continue
		}
		m := g.pick(p)
		if m == nil {
			g.unshift(p)
			return
		}
		if !g.deliver(m, p) {
			// The member is gone and its leave is on its way (the
			// group's inbox): this pass ends, so that it is taken in,
			// rather than offer the record to the same member again.
			return
		}
	}
}

// next takes the next record to deliver: redeliveries first, then the
// read-ahead buffer (refilled from the streams when empty).
func (g *group) next() *pending {
	if len(g.redeliver) > 0 {
		p := g.redeliver[0]
		g.redeliver[0] = nil
		g.redeliver = g.redeliver[1:]
		return p
	}
	if len(g.buffer) == 0 {
		g.refill()
		if len(g.buffer) == 0 {
			return nil
		}
	}
	p := g.buffer[0]
	g.buffer[0] = nil
	g.buffer = g.buffer[1:]
	return p
}

// unshift puts back a record that found no member.
func (g *group) unshift(p *pending) {
	if p.count > 0 {
		g.redeliver = append([]*pending{p}, g.redeliver...)
	} else {
		g.buffer = append([]*pending{p}, g.buffer...)
	}
}

// refill reads the next records of the source streams, in turn, skipping
// those already done and those whose topic does not match the filter.
func (g *group) refill() {
	store := g.m.opts.Store
	for tries := 0; tries < len(g.order) && len(g.buffer) == 0; tries++ {
		c := g.order[g.readNext%len(g.order)]
		g.readNext++
		if seen := c.nextSeen.Load(); seen > c.next {
			c.next = seen
		}
		if c.readPos >= c.next || c.span() >= uint64(g.opts.MaxUnackedSpan) {
			continue
		}
		n := min(readBatch, g.opts.ReadAhead)
		recs, err := store.Read(c.stream, c.readPos, streams.ReadOptions{MaxRecords: n})
		if err != nil {
			g.log.Warn("reading source stream failed", "stream", c.stream, "error", err)
			continue
		}
		if len(recs) == 0 {
			continue
		}
		if first := recs[0].Offset; first > c.readPos {
			// Retention removed records the group had not finished.
			g.log.Warn("records expired before the group consumed them", "stream", c.stream,
				"from", c.readPos, "to", first, "count", first-c.readPos)
			c.skipTo(first)
		}
		for i := range recs {
			r := recs[i]
			c.readPos = r.Offset + 1
			if c.isDone(r.Offset) {
				continue
			}
			if !topic.Match(g.key.filter, r.Topic) {
				c.markDone(r.Offset)
				g.counters.skipped++
				continue
			}
			g.buffer = append(g.buffer, &pending{cur: c, rec: r, count: c.counts[r.Offset], heapIdx: -1})
		}
	}
}

// pick chooses a member with room for p, preferring, for a redelivery,
// another member than the last one.
func (g *group) pick(p *pending) *member {
	var fallback *member
	n := len(g.members)
	switch g.opts.Strategy {
	case LeastInflight:
		var best *member
		for i := 0; i < n; i++ {
			m := g.members[(g.rr+i)%n]
			if m.room() <= 0 {
				continue
			}
			if m == p.last && n > 1 {
				fallback = m
				continue
			}
			if best == nil || len(m.inflight) < len(best.inflight) {
				best = m
			}
		}
		g.rr++
		if best != nil {
			return best
		}
		return fallback
	default: // round-robin, and redeliveries of the hash strategies
		for i := 0; i < n; i++ {
			idx := (g.rr + i) % n
			m := g.members[idx]
			if m.room() <= 0 {
				continue
			}
			if m == p.last && n > 1 {
				if fallback == nil {
					fallback = m
				}
				continue
			}
			g.rr = idx + 1
			return m
		}
		return fallback
	}
}

// hashMember is the member a record's key hashes to.
func (g *group) hashMember(p *pending) *member {
	key := p.rec.Topic
	if g.opts.Strategy == HashClient {
		key = p.rec.ClientID
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return g.members[int(h.Sum32()%uint32(len(g.members)))]
}

// drainQueues delivers records queued on members that have room.
func (g *group) drainQueues() {
	for _, m := range g.members {
		for len(m.queue) > 0 && m.room() > 0 {
			p := m.queue[0]
			m.queue[0] = nil
			m.queue = m.queue[1:]
			g.assigned--
			if !g.deliver(m, p) {
				break // gone: see pump
			}
		}
	}
}

// deliver sends p to m; false if m refused it (the client is gone, its
// leave on its way), p then back at the head of the redeliveries.
func (g *group) deliver(m *member, p *pending) bool {
	c := p.cur
	qos := min(m.qos, p.rec.QoS)
	dup := p.count > 0
	if qos == 0 {
		// At most once: done as soon as it is handed to the member.
		if _, err := m.out.Deliver(&p.rec, 0, false, nil); err != nil {
			g.unshift(p)
			return false
		}
		g.sent(m, p, dup)
		c.markDone(p.rec.Offset)
		return true
	}
	n := p.count + 1
	acked := func(reason byte) { g.post(func() { g.ack(m, p, n, reason) }) }
	cancel, err := m.out.Deliver(&p.rec, qos, dup, acked)
	if err != nil {
		g.unshift(p)
		return false
	}
	g.sent(m, p, dup)
	now := g.m.opts.Now()
	c.counts[p.rec.Offset] = p.count
	c.dirty = true
	p.member, p.cancel, p.sentAt = m, cancel, now
	p.deadline = now.Add(g.opts.AckTimeout)
	m.inflight[p] = struct{}{}
	g.inflight.add(p)
	return true
}

// sent counts a delivery of p to m.
func (g *group) sent(m *member, p *pending, dup bool) {
	p.count++
	p.last = m
	m.delivered++
	g.counters.delivered++
	if dup {
		g.counters.redelivered++
	}
}

// deadLetter appends p's record to the dead-letter stream and marks it done
// once that is durable.
func (g *group) deadLetter(p *pending, reason string) {
	rec := p.rec
	rec.UserProperties = append(append([]streams.UserProperty(nil), rec.UserProperties...),
		streams.UserProperty{Key: "mqstream-dlq-reason", Value: reason},
		streams.UserProperty{Key: "mqstream-dlq-deliveries", Value: strconv.Itoa(int(p.count))},
		streams.UserProperty{Key: "mqstream-dlq-group", Value: g.key.name},
		streams.UserProperty{Key: "mqstream-dlq-filter", Value: g.key.filter},
		streams.UserProperty{Key: "mqstream-dlq-stream", Value: p.cur.stream},
		streams.UserProperty{Key: "mqstream-dlq-offset", Value: strconv.FormatUint(rec.Offset, 10)},
	)
	name := g.deadLetterStream()
	g.log.Warn("record dead-lettered", "stream", p.cur.stream, "offset", rec.Offset, "dead_letter", name, "reason", reason)
	g.counters.deadLettered++
	store := g.m.opts.Store
	done := func(err error) {
		g.post(func() {
			if err != nil {
				g.log.Error("dead-lettering failed; the record will be delivered again", "error", err, "stream", p.cur.stream, "offset", rec.Offset)
				g.counters.deadLettered--
				p.count = 0 // start a new round of deliveries rather than looping on the dead-letter write
				if !p.cur.gone {
					g.redeliver = append(g.redeliver, p)
				}
				return
			}
			if !p.cur.gone {
				p.cur.markDone(rec.Offset)
			}
		})
	}
	submit := func() error {
		return store.Submit(streams.AppendRequest{Stream: name, Records: []streams.Record{rec},
			Done: func(_ uint64, err error) { done(err) }})
	}
	go func() {
		// The dead-letter stream is created on first use (even with
		// auto-create off); creating waits for a commit, so not on the group goroutine.
		if _, err := store.DescribeStream(name); err != nil {
			ctx, cancel := g.ctx()
			defer cancel()
			if _, err := store.CreateStream(ctx, name, streams.Retention{}); err != nil && !isExists(err) {
				done(fmt.Errorf("create dead-letter stream %q: %w", name, err))
				return
			}
		}
		if err := submit(); err != nil {
			done(err)
		}
	}()
}
