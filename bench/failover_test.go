package bench

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testnode"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/node"
	"github.com/mqstream/mqstream/streams"
)

// TestFailoverReconnectsAndResends: a run spread over a three-node cluster
// loses a node half way, the way its clients see a crash: its answers stop
// (publishes it stored go unacknowledged), then its connections drop and
// it is gone. The clients on it reconnect to the others, the publishes
// not acknowledged are sent again, the run ends by itself, and every
// acknowledged publish is stored on both survivors.
func TestFailoverReconnectsAndResends(t *testing.T) {
	nodes := testnode.StartCluster(t, nil)
	var proxies []*proxy
	var addrs []string
	for _, n := range nodes {
		p := startProxy(t, n.MQTTAddr())
		proxies = append(proxies, p)
		addrs = append(addrs, p.addr())
	}
	var mu sync.Mutex // guards acked
	acked := map[[2]uint64]bool{}
	o := opts(strings.Join(addrs, ","), ModeE2E)
	// Publishers 2 and 5 and subscriber 1 connect to n3; one stream per
	// publisher.
	o.Publishers, o.Subscribers, o.Count, o.Rate, o.Window = 6, 2, 6000, 1500, 16
	o.Topic, o.Duration, o.Drain = "%d/fail", 20*time.Second, 2*time.Second
	o.onAcked = func(p int, seq uint64) {
		mu.Lock()
		acked[[2]uint64{uint64(p), seq}] = true
		mu.Unlock()
	}
	ackedNow := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := Run(context.Background(), o)
		done <- outcome{res, err}
	}()
	testutil.Eventually(t, 15*time.Second, "1,500 publishes acknowledged", func() bool { return ackedNow() >= 1500 })
	// n3 stops answering: its publishers fill their windows with publishes
	// the cluster stores and nobody acknowledges.
	proxies[2].hold.Store(true)
	held := time.Now()
	// Both of its publishers' windows full: as many of their publishes
	// stored and not acknowledged. (The other publishers' publishes
	// between store and ack do not count: counted in, they let the hold
	// end with a window not full, and fewer than two windows resent.)
	testutil.Eventually(t, 10*time.Second, "the held publishers' windows full of stored publishes", func() bool {
		stored := storedPublishes(t, nodes[0], o.Publishers)
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for k := range stored {
			if (k[0] == 2 || k[0] == 5) && !acked[k] {
				n++
			}
		}
		return n >= 2*o.Window
	})
	proxies[2].close()
	if err := nodes[2].Close(context.Background()); err != nil {
		t.Fatalf("closing n3: %v", err)
	}
	var out outcome
	select {
	case out = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("the run did not end")
	}
	res, err := out.res, out.err
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", res)
	if res.Published != 6000 || res.Acked != res.Published || res.Refused != 0 || res.Unacked != 0 {
		t.Fatalf("published %d acked %d refused %d unacked %d", res.Published, res.Acked, res.Refused, res.Unacked)
	}
	// Two publishers and a subscriber lost their connection; a publisher
	// may also be disconnected by a survivor refusing a publish while the
	// shards elect new leaders.
	if res.Disconnects < 3 || res.Reconnects != res.Disconnects {
		t.Fatalf("disconnects %d reconnects %d, want at least 3, all reconnected", res.Disconnects, res.Reconnects)
	}
	if res.Resent < 2*int64(o.Window) || res.MaxAckGapMS <= 0 {
		t.Fatalf("resent %d (want at least %d), longest wait for an ack %.0f ms", res.Resent, 2*o.Window, res.MaxAckGapMS)
	}
	// The longest wait is the held node's publishers': it ended after
	// the hold began.
	if end, err := time.Parse(time.RFC3339Nano, res.MaxAckGapEnd); err != nil || end.Before(held) || end.After(time.Now()) {
		t.Fatalf("the longest wait for an ack ended at %q (%v), not between the hold (%s) and now", res.MaxAckGapEnd, err, held.UTC().Format(time.RFC3339Nano))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) != int(res.Acked) {
		t.Fatalf("%d distinct publishes acknowledged, the result says %d", len(acked), res.Acked)
	}
	for _, s := range []string{"connections lost", "reconnected", "resent", "longest wait for an ack"} {
		if !strings.Contains(res.String(), s) {
			t.Fatalf("the summary does not say %q: %s", s, res)
		}
	}
	for _, n := range nodes[:2] {
		testutil.Eventually(t, 10*time.Second, "every acknowledged publish on "+n.ID(), func() bool {
			stored := storedPublishes(t, n, o.Publishers)
			for k := range acked {
				if !stored[k] {
					return false
				}
			}
			return true
		})
	}
}

// storedPublishes reads the (publisher, sequence) pairs of the bench
// payloads in every stream on n.
func storedPublishes(t *testing.T, n *node.Node, publishers int) map[[2]uint64]bool {
	t.Helper()
	out := map[[2]uint64]bool{}
	for _, s := range n.Store().ListStreams() {
		for from := s.FirstOffset; ; {
			recs, err := n.Store().Read(s.Name, from, streams.ReadOptions{MaxRecords: 10000})
			if err != nil {
				t.Fatalf("reading %s on %s: %v", s.Name, n.ID(), err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				if len(r.Payload) >= headerSize && int(binary.BigEndian.Uint32(r.Payload)) < publishers {
					out[[2]uint64{uint64(binary.BigEndian.Uint32(r.Payload)), binary.BigEndian.Uint64(r.Payload[4:])}] = true
				}
			}
			from = recs[len(recs)-1].Offset + 1
		}
	}
	return out
}

// proxy relays TCP connections to a broker; hold stops relaying the
// broker's answers (they are read and dropped), close drops every
// connection and stops listening: a node that hangs, then crashes, as its
// clients see it.
type proxy struct {
	ln     net.Listener
	target string
	hold   atomic.Bool

	mu    sync.Mutex // guards conns
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(p.close)
	go p.accept()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 && !p.hold.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						err = werr
					}
				}
				if err != nil {
					c.Close()
					return
				}
			}
		}()
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
