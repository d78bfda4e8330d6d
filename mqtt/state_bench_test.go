package mqtt

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// BenchmarkRestoreSessions measures how long a node takes to restore
// persistent sessions at start: 10,000 sessions, each with 2
// subscriptions and 5 queued QoS 1 messages of 100 bytes (written in the
// broker's own format, as if clients had left them), restored per op.
//
//	go test -run '^$' -bench RestoreSessions -benchtime 5x ./mqtt/
func BenchmarkRestoreSessions(b *testing.B) {
	const sessions, subs, queued = 10_000, 2, 5
	dir := b.TempDir()
	store, err := streams.Open(streams.Options{Dir: dir, AutoCreate: true, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	kv := store.KV("mqtt")
	payload := make([]byte, 100)
	msg := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "sensors/x/temp", Payload: payload}
	var writes []streams.KVWrite
	for i := 0; i < sessions; i++ {
		id := fmt.Sprintf("device-%05d", i)
		writes = append(writes, streams.KVWrite{Key: clientKey(keySession, id, 0),
			Value: encodeSession(&sessionRecord{ProtocolVersion: 4, Listener: "tcp", DisconnectedAt: time.Now().Unix()})})
		for s := 0; s < subs; s++ {
			sub := packets.Subscription{Filter: fmt.Sprintf("cmd/%s/%d", id, s), Qos: 1}
			writes = append(writes, streams.KVWrite{Key: subscriptionKey(id, sub.Filter), Value: encodeSubscription(sub)})
		}
		for q := 1; q <= queued; q++ {
			d := &delivery{pk: &msg, qos: 1}
			writes = append(writes, streams.KVWrite{Key: seqKey(keyQueue, id, uint64(q)), Value: encodeDelivery(d)})
		}
		if len(writes) > 10_000 {
			if err := kv.Write(b.Context(), writes...); err != nil {
				b.Fatal(err)
			}
			writes = writes[:0]
		}
	}
	if err := kv.Write(b.Context(), writes...); err != nil {
		b.Fatal(err)
	}
	mapper, err := topic.NewMapper(nil, topic.DefaultRule{Kind: topic.DefaultFirstLevel})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var heap uint64
	for i := 0; i < b.N; i++ {
		br, err := New(Options{Mapper: mapper, Store: store, Logger: testLogger(), State: kv})
		if err != nil {
			b.Fatal(err)
		}
		if err := br.restore(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := len(br.Sessions()); got != sessions {
			b.Fatalf("restored %d sessions, want %d", got, sessions)
		}
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heap = ms.HeapAlloc
		br.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/restore")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	b.StopTimer()
	store.Close()
}
