package shared

import (
	"context"
	"fmt"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// BenchmarkDispatchAck measures the group's bookkeeping per record: read
// from the store, pick a member, reserve a packet id, encode, track the
// deadline, then the ack that marks it done. Members are mochi clients
// without a connection, so no socket I/O is measured.
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
	server := mochi.New(&mochi.Options{Logger: testLogger()})
	m, err := New(Options{Store: store, Mapper: mapper, Logger: testLogger(), FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	m.server = server
	meta := metaFor(groupKey{"g", "jobs/#"}, Position{Kind: StartEarliest}, time.Now(), DefaultGroupOptions(), true)
	g := newGroup(m, groupKey{"g", "jobs/#"}, meta, Position{Kind: StartEarliest})
	c := newCursor("jobs", 0)
	c.next = uint64(((b.N + len(recs) - 1) / len(recs)) * len(recs))
	g.cursors["jobs"], g.order = c, []*cursor{c}
	for i := 0; i < 4; i++ {
		cl := server.NewClient(nil, "bench", fmt.Sprintf("member-%d", i), false)
		cl.Properties.ProtocolVersion = 4
		cs := &clientState{ids: map[uint16]*member{}, members: map[groupKey]*member{}}
		g.join(g.newMember(cl, cs, packets.Subscription{Qos: 1}, 1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	done := 0
	for done < b.N {
		g.pump()
		for _, mem := range g.members {
			for id := range mem.inflight {
				mem.cs.take(id)
				mem.cl.State.Inflight.Delete(id)
				g.ack(mem, id, 0)
				done++
			}
		}
	}
	b.StopTimer()
	for _, mem := range g.members {
		mem.w.close()
	}
}
