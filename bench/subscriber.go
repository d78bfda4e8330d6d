package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A subscriber counts what arrives over one connection at a time. When the
// connection drops, it connects to the next broker of the list (capped
// backoff between failed attempts) and subscribes again, until the run
// ends. What was published while it was away arrives only where the
// broker keeps it (a persistent session, a durable $share group); the
// rest counts as lost.
type subscriber struct {
	i  int
	co clientOptions
	// filters are the subscriber's subscriptions (many in routes mode).
	filters []string
	// c is the current connection and conns counts the connections made
	// (the next goes to the next broker): the keeper goroutine's, read by
	// closeSubscribers once it has stopped.
	c     *client
	conns int

	mu   sync.Mutex // guards seen, distinct, dups, lat
	seen [][]uint64 // bitset per publisher
	// distinct counts the bits set in seen: the messages that arrived at
	// least once.
	distinct int64
	dups     int64
	lat      []int32 // microseconds
	got      atomic.Int64
	// faults counts deliveries for the test-only fault injection.
	faults atomic.Int64
}

// broker is the subscriber's k for brokerFor: subscriber i starts on the
// broker after publisher i's.
func (s *subscriber) broker() int { return s.i + 1 }

// subscriberBufSize sizes a subscriber's buffers: the full size for a
// few subscribers, less for many (fan-out to a thousand).
func subscriberBufSize(subscribers int) int {
	if subscribers > 16 {
		return 8 << 10
	}
	return 64 << 10
}

func (r *run) startSubscribers(ctx context.Context) error {
	filter := strings.ReplaceAll(r.o.Topic, "%d", "+")
	if r.o.Mode == ModeShare || (r.o.Mode == ModeSub && r.o.Group != "") {
		filter = "$share/" + r.o.Group + "/" + filter
	}
	var routes [][]string
	if r.o.Mode == ModeRoutes {
		routes = routeFilters(r.o)
	}
	ctx, r.stopKeepers = context.WithCancel(ctx)
	for i := 0; i < r.o.Subscribers; i++ {
		s := &subscriber{i: i, co: clientOptions{id: fmt.Sprintf("%s-sub-%d", r.o.ClientPrefix, i), version: r.o.Version, keepalive: 60,
			bufSize: subscriberBufSize(r.o.Subscribers)},
			seen: make([][]uint64, len(r.perPub)), filters: []string{filter}}
		if routes != nil {
			s.filters = routes[i]
		}
		for p, n := range r.perPub {
			s.seen[p] = make([]uint64, n/64+1)
		}
		c, conns, err := dialAny(ctx, r.o.Broker, s.broker(), s.co)
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		if r.o.Persistent {
			// That clean connection discarded a session left by an
			// earlier run, so this one starts empty.
			c.close()
			s.co.persistent = true
			if c, err = dial(ctx, brokerFor(r.o.Broker, s.broker()+conns-1), s.co); err != nil {
				return fmt.Errorf("subscriber %d: %w", i, err)
			}
		}
		s.c, s.conns = c, conns
		r.subs = append(r.subs, s)
		if err := r.subscribe(ctx, s); err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
	}
	for _, s := range r.subs {
		r.keepers.Add(1)
		go func() {
			defer r.keepers.Done()
			r.keepSubscribed(ctx, s)
		}()
	}
	return nil
}

// subscribeBatch is the number of filters per SUBSCRIBE.
const subscribeBatch = 100

// subscribe starts the subscriber's new connection and subscribes.
func (r *run) subscribe(ctx context.Context, s *subscriber) error {
	s.c.onPublish = func(_ string, _ byte, _ bool, payload []byte) { r.deliver(s, payload) }
	s.c.start()
	for f := s.filters; len(f) > 0; f = f[min(subscribeBatch, len(f)):] {
		if err := s.c.subscribe(ctx, r.o.SubQoS, f[:min(subscribeBatch, len(f))]...); err != nil {
			return err
		}
	}
	return nil
}

// keepSubscribed replaces the subscriber's connection whenever it drops,
// until ctx ends (the run is over).
func (r *run) keepSubscribed(ctx context.Context, s *subscriber) {
	limit := time.Now().Add(r.o.Duration + r.o.Drain)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.c.done:
		}
		r.disconnects.Add(1)
		for {
			c, err := r.redial(ctx, s.broker(), &s.conns, limit, s.co)
			if err != nil {
				return
			}
			s.c = c
			if err := r.subscribe(ctx, s); err == nil {
				break
			}
			c.conn.Close()
			<-c.done
			r.disconnects.Add(1)
		}
	}
}

func (r *run) closeSubscribers() {
	if r.stopKeepers != nil {
		r.stopKeepers()
	}
	r.keepers.Wait()
	for _, s := range r.subs {
		s.c.close()
		if r.o.Persistent {
			// Discard the persistent session: a clean connection ends it.
			co := s.co
			co.persistent = false
			if c, err := dial(context.Background(), brokerFor(r.o.Broker, s.broker()+s.conns-1), co); err == nil {
				c.close()
			}
		}
	}
}
