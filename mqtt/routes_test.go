package mqtt

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// routesFixture is a mochi server without listeners whose index and the
// selector's route index receive the same subscriptions.
type routesFixture struct {
	server *mochi.Server
	sel    *selector
}

func newRoutesFixture(t testing.TB) *routesFixture {
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: testLogger()})
	t.Cleanup(func() { _ = s.Close() })
	return &routesFixture{server: s, sel: newSelector(s)}
}

func (f *routesFixture) client(id string) *mochi.Client {
	if cl, ok := f.server.Clients.Get(id); ok {
		return cl
	}
	cl := f.server.NewClient(nil, "test", id, false)
	f.server.Clients.Add(cl)
	return cl
}

func (f *routesFixture) subscribe(id string, sub packets.Subscription) {
	cl := f.client(id)
	f.server.Topics.Subscribe(id, sub)
	cl.State.Subscriptions.Add(sub.Filter, sub)
	if isPlusHash(sub.Filter) && !mochi.IsSharedFilter(sub.Filter) {
		f.sel.remember(sub.Filter, id)
	}
	f.sel.routes.add(id, sub)
}

func (f *routesFixture) unsubscribe(id, filter string) {
	f.server.Topics.Unsubscribe(filter, id)
	f.client(id).State.Subscriptions.Delete(filter)
	f.sel.forget(filter, id)
	f.sel.routes.remove(filter, id)
}

// summary describes a selection for comparison: per client the QoS, No
// Local and the non-zero subscription identifiers.
func summary(subs *mochi.Subscribers) map[string]string {
	out := map[string]string{}
	if subs == nil {
		return out
	}
	for id, sub := range subs.Subscriptions {
		ids := map[string]int{}
		if sub.Identifiers == nil && sub.Identifier > 0 {
			ids[sub.Filter] = sub.Identifier
		}
		for f, v := range sub.Identifiers {
			if v > 0 {
				ids[f] = v
			}
		}
		out[id] = fmt.Sprintf("qos=%d nolocal=%v ids=%v", sub.Qos, sub.NoLocal, ids)
	}
	return out
}

// TestRouteIndexSelectsAsTheCorrectedMochiIndex: random subscriptions and
// unsubscriptions (wildcards, '$' levels, empty levels, shared filters,
// overlapping filters of one client) give the same selection from the
// route index as from mochi's index corrected by the selector, for every
// topic of a small space; at the end, unsubscribing everything empties the
// route index.
func TestRouteIndexSelectsAsTheCorrectedMochiIndex(t *testing.T) {
	levels := []string{"a", "b", "$s", ""}
	filterLevels := append([]string{"+", "#"}, levels...)
	rng := rand.New(rand.NewPCG(7, 16))
	randomFilter := func() string {
		n := 1 + rng.IntN(4)
		parts := make([]string, 0, n)
		for i := 0; i < n; i++ {
			l := filterLevels[rng.IntN(len(filterLevels))]
			if l == "#" && i != n-1 {
				l = "+"
			}
			parts = append(parts, l)
		}
		f := strings.Join(parts, "/")
		if rng.IntN(10) == 0 {
			f = "$share/g/" + f
		}
		return f
	}
	var topics []string
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		for _, l := range levels {
			t := l
			if prefix != "" || depth > 0 {
				t = prefix + "/" + l
			}
			if t != "" { // not a topic
				topics = append(topics, t)
			}
			if depth < 3 {
				gen(t, depth+1)
			}
		}
	}
	gen("", 0)

	f := newRoutesFixture(t)
	held := map[[2]string]bool{}
	for round := 0; round < 30; round++ {
		for i := 0; i < 20; i++ {
			id := fmt.Sprintf("c%d", rng.IntN(6))
			filter := randomFilter()
			if held[[2]string{id, filter}] && rng.IntN(2) == 0 {
				f.unsubscribe(id, filter)
				delete(held, [2]string{id, filter})
				continue
			}
			f.subscribe(id, packets.Subscription{Filter: filter, Qos: byte(rng.IntN(3)),
				NoLocal: rng.IntN(4) == 0, Identifier: rng.IntN(3)})
			held[[2]string{id, filter}] = true
		}
		for _, topic := range topics {
			want := summary(f.sel.subscribers(topic, ""))
			got := summary(f.sel.routes.subscribers(topic))
			if !maps.Equal(got, want) {
				t.Fatalf("round %d, topic %q: route index %v, mochi corrected %v", round, topic, got, want)
			}
		}
	}
	for k := range held {
		f.unsubscribe(k[0], k[1])
	}
	if n := f.sel.routes.len(); n != 0 || !f.sel.routes.root.empty() {
		t.Fatalf("after unsubscribing everything: %d subscriptions, root %+v", n, f.sel.routes.root)
	}
}

// TestRouteIndexReplacesASubscription: subscribing again to a filter
// replaces the subscription (new QoS), as in mochi's index.
func TestRouteIndexReplacesASubscription(t *testing.T) {
	x := newRouteIndex()
	x.add("c", packets.Subscription{Filter: "a/+", Qos: 0})
	x.add("c", packets.Subscription{Filter: "a/+", Qos: 2})
	subs := x.subscribers("a/b")
	if subs == nil || len(subs.Subscriptions) != 1 || subs.Subscriptions["c"].Qos != 2 {
		t.Fatalf("selection %+v", subs)
	}
	if x.subscribers("b/a") != nil {
		t.Fatal("a topic no filter matches has a selection")
	}
	x.remove("a/+", "c")
	x.remove("a/+", "c") // twice: nothing to do
	x.remove("never/subscribed", "c")
	if x.subscribers("a/b") != nil || x.len() != 0 {
		t.Fatal("the removed subscription is still selected")
	}
}

// BenchmarkRouteSelection: selecting the subscribers of random topics
// among 100,000 filters (half "bench/<i>/+/v", half "bench/<i>/#", as
// `mqstream bench routes`), from mochi's index corrected by the selector
// (before) and from the route index (after).
func BenchmarkRouteSelection(b *testing.B) {
	const filters = 100_000
	f := newRoutesFixture(b)
	for i := 0; i < filters; i++ {
		filter := fmt.Sprintf("bench/%d/#", i)
		if i%2 == 0 {
			filter = fmt.Sprintf("bench/%d/+/v", i)
		}
		f.subscribe(fmt.Sprintf("s%d", i%10), packets.Subscription{Filter: filter, Qos: 1})
	}
	topics := make([]string, 4*filters)
	for i := range topics {
		topics[i] = fmt.Sprintf("bench/%d/%d/v", i/4, i%4)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(topics), func(i, j int) { topics[i], topics[j] = topics[j], topics[i] })
	b.Run("mochi-corrected", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if subs := f.sel.subscribers(topics[i%len(topics)], ""); len(subs.Subscriptions) != 1 {
				b.Fatal("not one subscriber")
			}
		}
	})
	b.Run("route-index", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if subs := f.sel.routes.subscribers(topics[i%len(topics)]); len(subs.Subscriptions) != 1 {
				b.Fatal("not one subscriber")
			}
		}
	})
}

// TestRouteIndexReportsInlineSubscriptions: a topic an inline subscription
// matches has a selection that says so (and no handler: mochi routes it),
// alone or with a plain subscription, until it is removed.
func TestRouteIndexReportsInlineSubscriptions(t *testing.T) {
	x := newRouteIndex()
	x.addInline(packets.Subscription{Filter: "a/#", Identifier: 3})
	subs, has := x.lookup("a/b")
	if !has || len(subs.InlineSubscriptions) != 1 || len(subs.Subscriptions) != 0 {
		t.Fatalf("inline only: %+v", subs)
	}
	x.add("c", packets.Subscription{Filter: "a/b", Qos: 1})
	if subs, _ := x.lookup("a/b"); len(subs.InlineSubscriptions) != 1 || len(subs.Subscriptions) != 1 {
		t.Fatalf("inline and plain: %+v", subs)
	}
	x.removeInline("a/#", 3)
	if subs, _ := x.lookup("a/b"); len(subs.InlineSubscriptions) != 0 || len(subs.Subscriptions) != 1 {
		t.Fatalf("plain left: %+v", subs)
	}
	x.remove("a/b", "c")
	if x.hasSubscribers("a/b") || !x.root.empty() {
		t.Fatal("everything removed, yet something is left")
	}
}

// TestRouteIndexSelectionsDoNotChange: a selection handed out is shared
// and never modified; later subscription changes make new ones.
func TestRouteIndexSelectionsDoNotChange(t *testing.T) {
	x := newRouteIndex()
	x.add("c1", packets.Subscription{Filter: "t", Qos: 1})
	first, _ := x.lookup("t")
	if again, _ := x.lookup("t"); again != first {
		t.Fatal("two lookups without a change between them made two selections")
	}
	x.add("c2", packets.Subscription{Filter: "t", Qos: 0})
	x.remove("t", "c1")
	if len(first.Subscriptions) != 1 || first.Subscriptions["c1"].Qos != 1 {
		t.Fatalf("the selection handed out changed: %+v", first.Subscriptions)
	}
	now, _ := x.lookup("t")
	if _, ok := now.Subscriptions["c2"]; !ok || len(now.Subscriptions) != 1 {
		t.Fatalf("selection after the changes: %+v", now.Subscriptions)
	}
}
