package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// unavailableAtFirst is a store whose first reads of each kind fail as
// a cluster node's do while no node holding the stream's shard answers.
type unavailableAtFirst struct {
	*streams.Store
	notifies, reads atomic.Int32 // failures left
}

func (u *unavailableAtFirst) Notify(name string) (<-chan struct{}, uint64, error) {
	if u.notifies.Add(-1) >= 0 {
		return nil, 0, fmt.Errorf("%w: no replica of the stream's shard answered", streams.ErrUnavailable)
	}
	return u.Store.Notify(name)
}

func (u *unavailableAtFirst) Read(name string, from uint64, o streams.ReadOptions) ([]streams.Record, error) {
	if u.reads.Add(-1) >= 0 {
		return nil, fmt.Errorf("%w: no replica of the stream's shard answered", streams.ErrUnavailable)
	}
	return u.Store.Read(name, from, o)
}

// TestFollowOutlastsUnavailableReads: a follow whose reads fail for a
// while (the stream's holders unreachable) stays open and goes on from
// where it was once they answer, rather than end as if it were over.
func TestFollowOutlastsUnavailableReads(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	appendOne := func(i int) {
		if _, err := store.Append(context.Background(), "live", streams.Record{Topic: "live/x", Payload: []byte(fmt.Sprint(i)), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	appendOne(0)
	u := &unavailableAtFirst{Store: store}
	u.notifies.Store(2)
	u.reads.Store(1)
	srv := httptest.NewServer(New(Options{Store: u, Logger: testutil.Logger()}).Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/streams/live/records?from_offset=0", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ids := make(chan string, 10)
	go func() {
		defer close(ids)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "id: ") {
				ids <- strings.TrimPrefix(l, "id: ")
			}
		}
	}()
	appendOne(1)
	for _, want := range []string{"0", "1"} {
		select {
		case id, ok := <-ids:
			if !ok {
				t.Fatal("the follow ended while its reads failed")
			}
			if id != want {
				t.Fatalf("record %s where %s was due", id, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("record %s not received", want)
		}
	}
}
