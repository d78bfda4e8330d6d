package shared

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// BenchmarkDispatchAck measures the group's bookkeeping per record: read
// from the store, pick a member, hand it the record, track the deadline,
// then the ack that marks it done. Members take every record at once, so
// no transport is measured.
func BenchmarkDispatchAck(b *testing.B) {
	store, err := streams.Open(streams.Options{Dir: b.TempDir(), AutoCreate: true, Sync: streams.SyncNone, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	mapper, _ := topic.NewMapper(nil, topic.DefaultRule{Kind: topic.DefaultFirstLevel})
	ctx := context.Background()
	recs := make([]streams.Record, 1000)
	for i := range recs {
		recs[i] = streams.Record{Topic: fmt.Sprintf("jobs/%d", i%10), Payload: make([]byte, 100), QoS: 1}
	}
	for n := 0; n < b.N; n += len(recs) {
		if _, err := store.Append(ctx, "jobs", recs...); err != nil {
			b.Fatal(err)
		}
	}
	m, err := New(Options{Store: store, Progress: store.KV("groups"), Mapper: mapper, Logger: testLogger(), FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	meta := metaFor(groupKey{"g", "jobs/#"}, Position{Kind: StartEarliest}, time.Now(), DefaultGroupOptions(), true)
	g := newGroup(m, groupKey{"g", "jobs/#"}, meta, Position{Kind: StartEarliest})
	c := newCursor("jobs", 0)
	c.next = uint64(((b.N + len(recs) - 1) / len(recs)) * len(recs))
	g.cursors["jobs"], g.order = c, []*cursor{c}
	var members []*benchMember
	for i := 0; i < 4; i++ {
		bm := &benchMember{id: fmt.Sprintf("member-%d", i)}
		members = append(members, bm)
		g.join(g.newMember(bm))
	}
	b.ReportAllocs()
	b.ResetTimer()
	done := 0
	for done < b.N {
		g.pump()
		for _, bm := range members {
			for _, acked := range bm.unacked {
				acked(0)
				done++
			}
			bm.unacked = bm.unacked[:0]
		}
		// The acks were posted to the group's inbox: run them.
		for _, fn := range g.inbox.take(nil) {
			fn()
		}
	}
}

// benchMember takes every delivery and keeps its ack for the benchmark.
type benchMember struct {
	id      string
	unacked []func(byte)
}

func (m *benchMember) ClientID() string    { return m.id }
func (m *benchMember) QoS() byte           { return 1 }
func (m *benchMember) ReceiveMaximum() int { return 0 }
func (m *benchMember) Room() int           { return 1 << 20 }
func (m *benchMember) OnRoom(func())       {}
func (m *benchMember) Deliver(_ *streams.Record, _ byte, _ bool, acked func(byte)) (func(), error) {
	m.unacked = append(m.unacked, acked)
	return func() {}, nil
}
