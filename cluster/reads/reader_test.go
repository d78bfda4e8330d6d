package reads

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// twoShards places streams whose name starts with "a" on shard 0, the
// others on shard 1; this node holds shard mine, a peer at addrs the
// other.
type twoShards struct {
	mine  int
	addrs []string
}

func (p twoShards) Shards() int { return 2 }
func (p twoShards) ShardOf(s string) int {
	if s != "" && s[0] == 'a' {
		return 0
	}
	return 1
}
func (p twoShards) Holders(i int) (bool, []string) {
	if i == p.mine {
		return true, nil
	}
	return false, p.addrs
}

type node struct {
	store *streams.Store
	mux   *rpcmux.Mux
}

func startNode(t *testing.T, id string) node { return startServing(t, id, nil) }

// startServing starts a node that serves the reads of the shards serves
// says (nil: all).
func startServing(t *testing.T, id string, serves func(int) bool) node {
	t.Helper()
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	mux, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: id, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mux.Close() })
	place := twoShards{}
	mux.Handle(Service, func(ctx context.Context, _ string, req []byte) ([]byte, error) {
		return Serve(ctx, store, place.ShardOf, serves, req)
	})
	return node{store: store, mux: mux}
}

func appendN(t *testing.T, s *streams.Store, stream string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := s.Append(context.Background(), stream, streams.Record{Topic: stream + "/t", Payload: []byte(fmt.Sprintf("%s-%d", stream, i)), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadsOfStreamsHeldElsewhere: node A holds shard 0, node B shard 1;
// A's reader lists, describes, reads, scans, finds offsets of and waits
// on B's streams over RPC exactly as B's store answers them.
func TestReadsOfStreamsHeldElsewhere(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	appendN(t, a.store, "alpha", 3)
	appendN(t, b.store, "beta", 10)
	r := New(a.store, twoShards{mine: 0, addrs: []string{b.mux.Addr().String()}}, a.mux, testutil.Logger())

	list := r.ListStreams()
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "beta" || list[1].Records != 10 {
		t.Fatalf("list: %+v", list)
	}
	info, err := r.DescribeStream("beta")
	want, _ := b.store.DescribeStream("beta")
	if err != nil || info.NextOffset != want.NextOffset || !info.CreatedAt.Equal(want.CreatedAt) || info.ID != want.ID {
		t.Fatalf("describe beta: %+v %v, want %+v", info, err, want)
	}
	got, err := r.Read("beta", 2, streams.ReadOptions{MaxRecords: 5})
	ref, _ := b.store.Read("beta", 2, streams.ReadOptions{MaxRecords: 5})
	if err != nil || len(got) != 5 {
		t.Fatalf("read: %d records, %v", len(got), err)
	}
	for i := range got {
		if got[i].Offset != ref[i].Offset || string(got[i].Payload) != string(ref[i].Payload) || !got[i].Timestamp.Equal(ref[i].Timestamp) ||
			got[i].Topic != ref[i].Topic || got[i].QoS != ref[i].QoS {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], ref[i])
		}
	}
	var scanned []uint64
	if err := r.Scan(context.Background(), "beta", 3, 8, func(rec streams.Record) (bool, error) {
		scanned = append(scanned, rec.Offset)
		return true, nil
	}); err != nil || fmt.Sprint(scanned) != "[3 4 5 6 7]" {
		t.Fatalf("scan: %v %v", scanned, err)
	}
	if off, err := r.OffsetAt("beta", ref[3].Timestamp); err != nil || off > 5 {
		t.Fatalf("offset at: %d %v", off, err)
	}

	// Wait on a remote stream: it wakes when B's stream grows.
	ch, next, err := r.Notify("beta")
	if err != nil || next != 10 {
		t.Fatalf("notify: next %d, %v", next, err)
	}
	appendN(t, b.store, "beta", 1)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the remote stream grew and the waiter was not woken")
	}
	if got, _ := r.Read("beta", 10, streams.ReadOptions{}); len(got) != 1 {
		t.Fatalf("after the wake-up: %d records", len(got))
	}
	// The local shard is read locally.
	if got, err := r.Read("alpha", 0, streams.ReadOptions{}); err != nil || len(got) != 3 {
		t.Fatalf("local read: %d %v", len(got), err)
	}
}

// TestRemoteReadErrors: a stream missing on its holder is "not found"
// (as a local one is); a holder that does not answer is "unavailable",
// and a listing says which shards it lacks.
func TestRemoteReadErrors(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	r := New(a.store, twoShards{mine: 0, addrs: []string{b.mux.Addr().String()}}, a.mux, testutil.Logger())
	if _, err := r.DescribeStream("nope"); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("describe of a missing remote stream: %v", err)
	}
	if _, err := r.Read("nope", 0, streams.ReadOptions{}); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("read of a missing remote stream: %v", err)
	}
	down := New(a.store, twoShards{mine: 0, addrs: []string{"127.0.0.1:1"}}, a.mux, testutil.Logger())
	down.timeout = time.Second
	if _, err := down.DescribeStream("beta"); !errors.Is(err, streams.ErrUnavailable) {
		t.Fatalf("describe with no holder answering: %v", err)
	}
	appendN(t, a.store, "alpha", 1)
	if list, unlisted := down.Listing(); len(list) != 1 || list[0].Name != "alpha" || fmt.Sprint(unlisted) != "[1]" {
		t.Fatalf("listing with no holder of shard 1 answering: %+v, unlisted %v", list, unlisted)
	}
	if list, unlisted := r.Listing(); len(list) != 1 || unlisted != nil {
		t.Fatalf("listing with every holder answering: %+v, unlisted %v", list, unlisted)
	}
	if _, err := Serve(context.Background(), b.store, twoShards{}.ShardOf, nil, []byte{9, 0, 0}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("unknown operation: %v", err)
	}
	huge := binary.AppendUvarint([]byte{opList}, 1<<63)
	if _, err := Serve(context.Background(), b.store, twoShards{}.ShardOf, nil, append(huge, 0)); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a shard beyond an int: %v", err)
	}
}

// TestHolderNotServingIsPassedOver: the first holder of a shard does not
// serve its reads yet (a replica just added, or restarted, still
// catching up, with none or an old state of the shard's streams): it
// refuses, and the reader asks the next holder, rather than taking its
// "not found" or short listing as the answer.
func TestHolderNotServingIsPassedOver(t *testing.T) {
	a := startNode(t, "a")
	behind := startServing(t, "behind", func(int) bool { return false })
	b := startNode(t, "b")
	appendN(t, b.store, "beta", 10)
	appendN(t, behind.store, "beta", 2) // an older state of the stream
	r := New(a.store, twoShards{mine: 0, addrs: []string{behind.mux.Addr().String(), b.mux.Addr().String()}}, a.mux, testutil.Logger())
	if info, err := r.DescribeStream("beta"); err != nil || info.Records != 10 {
		t.Fatalf("describe: %+v %v, want the serving holder's 10 records", info, err)
	}
	if got, err := r.Read("beta", 0, streams.ReadOptions{}); err != nil || len(got) != 10 {
		t.Fatalf("read: %d records %v, want 10", len(got), err)
	}
	if _, err := r.DescribeStream("gamma"); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("describe of a stream no serving holder has: %v, want not found", err)
	}
	if list, unlisted := r.Listing(); len(list) != 1 || list[0].Records != 10 || unlisted != nil {
		t.Fatalf("listing: %+v, unlisted %v", list, unlisted)
	}
	only := New(a.store, twoShards{mine: 0, addrs: []string{behind.mux.Addr().String()}}, a.mux, testutil.Logger())
	if _, err := only.DescribeStream("beta"); !errors.Is(err, ErrNoHolder) {
		t.Fatalf("describe with no holder serving: %v, want ErrNoHolder", err)
	}
	if _, unlisted := only.Listing(); fmt.Sprint(unlisted) != "[1]" {
		t.Fatalf("listing with no holder serving: unlisted %v, want [1]", unlisted)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encodeRequest(request{op: opRead, shard: 1, stream: "s", from: 3, maxRecords: 10, maxBytes: 100}))
	f.Add(encodeRequest(request{op: opWait, stream: "s", from: 3, wait: time.Second}))
	f.Add(encodeRecords([]streams.Record{{Offset: 4, Payload: []byte("x"), Timestamp: time.Unix(1, 0)}})[1:])
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRequest(b); err == nil {
			if _, err := decodeRequest(encodeRequest(r)); err != nil {
				t.Fatalf("re-encoded request does not decode: %v", err)
			}
		}
		_, _ = decodeRecords(b)
		_, _ = decodeOffset(b)
		_, _ = decodeStatus(b)
	})
}

// notFormed is the placement of a node whose cluster has not formed yet.
type notFormed struct{}

func (notFormed) Shards() int                  { return 0 }
func (notFormed) ShardOf(string) int           { return 0 }
func (notFormed) Holders(int) (bool, []string) { return true, nil }

// TestStreamsChangedLooksAgainBeforeTheClusterFormed: a consumer that
// asks before the cluster formed (the consumer groups do, as the node
// starts) is woken after a second, not only by a stream created here:
// once formed, the streams of the shards held elsewhere are only seen by
// looking again.
func TestStreamsChangedLooksAgainBeforeTheClusterFormed(t *testing.T) {
	a := startNode(t, "a")
	r := New(a.store, notFormed{}, a.mux, testutil.Logger())
	select {
	case <-r.StreamsChanged():
	case <-time.After(5 * changedEvery):
		t.Fatal("StreamsChanged waited for a local change only before the cluster formed")
	}
}
