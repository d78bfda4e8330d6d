package shared

import (
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// idleMember never has room: the group only registers it.
type idleMember struct{ id string }

func (f *idleMember) ClientID() string    { return f.id }
func (f *idleMember) QoS() byte           { return 1 }
func (f *idleMember) ReceiveMaximum() int { return 0 }
func (f *idleMember) Room() int           { return 0 }
func (f *idleMember) Deliver(*streams.Record, byte, bool, func(byte)) (func(), error) {
	return func() {}, nil
}
func (f *idleMember) OnRoom(func()) {}

// TestConcurrentFirstJoinsStartOneGroup: members subscribing at once to a
// group nobody created yet end up in one group; Close stops it (a second,
// unregistered group used to keep running, deliver duplicates and hang
// Close).
func TestConcurrentFirstJoinsStartOneGroup(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	mapper, _ := topic.NewMapper(nil, topic.DefaultRule{Kind: topic.DefaultFirstLevel})
	m, err := New(Options{Store: store, Progress: store.KV("groups"), Mapper: mapper, FlushInterval: 20 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Join("g", "cj/#", &idleMember{id: "c"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Manager.Close hangs: a group started by a concurrent first Join is not in the map")
	}
}
