package streams

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// submitWait submits req and waits for its outcome.
func submitWait(t *testing.T, s *Store, req AppendRequest) (uint64, error) {
	t.Helper()
	type result struct {
		first uint64
		err   error
	}
	resc := make(chan result, 1)
	req.Done = func(first uint64, err error) { resc <- result{first, err} }
	if err := s.Submit(req); err != nil {
		return 0, err
	}
	r := <-resc
	return r.first, r.err
}

// TestAppliedIndexPerLog: each replicated log has its own applied-index
// marker, written with the records it covers, kept across a reopen; the
// unnamed log's marker is separate from the named ones.
func TestAppliedIndexPerLog(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	for _, r := range []AppendRequest{
		{Stream: "a", Records: []Record{rec("t", "1")}, AppliedLog: "shard-1", AppliedIndex: 5},
		{Stream: "b", Records: []Record{rec("t", "2")}, AppliedLog: "shard-2", AppliedIndex: 9},
		{Stream: "a", Records: []Record{rec("t", "3")}, AppliedLog: "shard-1", AppliedIndex: 7},
	} {
		if _, err := submitWait(t, s, r); err != nil {
			t.Fatal(err)
		}
	}
	// A marker alone, for a log entry that stored nothing.
	if _, err := submitWait(t, s, AppendRequest{AppliedLog: "shard-3", AppliedIndex: 4}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.ListStreams()); n != 2 {
		t.Fatalf("%d streams after a marker-only request, want 2", n)
	}
	check := func(s *Store) {
		t.Helper()
		for log, want := range map[string]uint64{"shard-1": 7, "shard-2": 9, "shard-3": 4, "shard-4": 0, "": 0} {
			if got, err := s.AppliedIndexOf(log); err != nil || got != want {
				t.Fatalf("applied index of %q: %d %v, want %d", log, got, err, want)
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openTest(t, dir, nil))
}

// TestRefusedAppendSetsItsMarker: a replicated log's entry whose append
// the store refuses (a missing stream, a record too large) is applied
// all the same, its refusal being its result: the
// marker moves, kept across a reopen, and nothing is stored.
func TestRefusedAppendSetsItsMarker(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.AutoCreate = false; o.MaxRecordBytes = 64 })
	if _, err := s.CreateStream(context.Background(), "a", Retention{}); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		req  AppendRequest
		want error
	}{
		{AppendRequest{Stream: "a", Records: []Record{rec("t", "1")}}, nil},
		{AppendRequest{Stream: "missing", Records: []Record{rec("t", "3")}}, ErrStreamNotFound},
		{AppendRequest{Stream: "a", Records: []Record{rec("t", string(make([]byte, 100)))}}, ErrRecordTooLarge},
	} {
		c.req.AppliedLog, c.req.AppliedIndex = "shard-1", uint64(i+1)
		if _, err := submitWait(t, s, c.req); !errors.Is(err, c.want) {
			t.Fatalf("append %d: %v, want %v", i+1, err, c.want)
		}
		if got, err := s.AppliedIndexOf("shard-1"); err != nil || got != uint64(i+1) {
			t.Fatalf("marker after append %d: %d %v", i+1, got, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, nil)
	if got, err := s.AppliedIndexOf("shard-1"); err != nil || got != 3 {
		t.Fatalf("marker after a reopen: %d %v, want 3", got, err)
	}
	if info, err := s.DescribeStream("a"); err != nil || info.NextOffset != 1 || len(s.ListStreams()) != 1 {
		t.Fatalf("stream a: %+v %v; %d streams", info, err, len(s.ListStreams()))
	}
}

// TestAppendWithGivenTimestamp: a replica's append keeps its leader's
// timestamp, raised to the stream's newest one if older.
func TestAppendWithGivenTimestamp(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	leader := time.Unix(1_700_000_000, 123456789)
	if _, err := submitWait(t, s, AppendRequest{Stream: "ts", Records: []Record{rec("t", "1"), rec("t", "2")}, Timestamp: leader}); err != nil {
		t.Fatal(err)
	}
	if _, err := submitWait(t, s, AppendRequest{Stream: "ts", Records: []Record{rec("t", "3")}, Timestamp: leader.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Read("ts", 0, ReadOptions{})
	if err != nil || len(recs) != 3 {
		t.Fatalf("read %d records, %v", len(recs), err)
	}
	for i, r := range recs {
		if !r.Timestamp.Equal(leader) {
			t.Fatalf("record %d: timestamp %v, want %v", i, r.Timestamp, leader)
		}
	}
}

// TestSyncWaits: Sync returns once earlier commits are durable, under
// every policy, and fails once the store is closed.
func TestSyncWaits(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	if _, err := submitWait(t, s, AppendRequest{Stream: "s", Records: []Record{rec("t", "1")}, NoSync: true}); err != nil {
		t.Fatal(err)
	}
	before := s.StoreCounters().Syncs
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := s.StoreCounters().Syncs; after <= before {
		t.Fatalf("syncs %d -> %d", before, after)
	}
	_ = s.Close()
	if err := s.Sync(context.Background()); err == nil {
		t.Fatal("Sync on a closed store succeeded")
	}
}

// TestAppendEncoded: records encoded by AppendEncoded (timestamp 0) are
// stored as they are, with the request's timestamp, and read back equal;
// an oversized or malformed one is refused and nothing is stored.
func TestAppendEncoded(t *testing.T) {
	s := openTest(t, t.TempDir(), func(o *Options) { o.MaxRecordBytes = 1 << 10 })
	in := []Record{
		{Topic: "a/b", Payload: []byte("one"), QoS: 1, ClientID: "c1", ContentType: "text/plain",
			UserProperties: []UserProperty{{Key: "k", Value: "v"}}, CorrelationData: []byte{1, 2}, ResponseTopic: "r"},
		{Topic: "a/c", Payload: []byte("two"), Retain: true, HasPayloadFormat: true, PayloadFormat: 1},
	}
	var enc [][]byte
	for i := range in {
		enc = append(enc, AppendEncoded(nil, &in[i], 0))
	}
	ts := time.Unix(1_700_000_123, 0)
	first, err := submitWait(t, s, AppendRequest{Stream: "e", Encoded: enc, Timestamp: ts})
	if err != nil || first != 0 {
		t.Fatalf("append encoded: %d %v", first, err)
	}
	got, err := s.Read("e", 0, ReadOptions{})
	if err != nil || len(got) != 2 {
		t.Fatalf("read %d, %v", len(got), err)
	}
	for i, r := range got {
		want := in[i]
		want.Offset, want.Timestamp = uint64(i), ts
		if !r.Timestamp.Equal(ts) {
			t.Fatalf("record %d timestamp %v", i, r.Timestamp)
		}
		r.Timestamp = ts
		if fmt.Sprintf("%+v", r) != fmt.Sprintf("%+v", want) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, r, want)
		}
	}
	big := AppendEncoded(nil, &Record{Topic: "t", Payload: make([]byte, 2<<10)}, 0)
	if _, err := submitWait(t, s, AppendRequest{Stream: "e", Encoded: [][]byte{big}}); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	stamped := AppendEncoded(nil, &in[0], 12345)
	if _, err := submitWait(t, s, AppendRequest{Stream: "e", Encoded: [][]byte{stamped}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("already stamped: %v", err)
	}
	if info, _ := s.DescribeStream("e"); info.NextOffset != 2 {
		t.Fatalf("%d records after refusals", info.NextOffset)
	}
}

// TestKVWithAppliedIndex: a replicated log's key/value writes carry its
// applied-index marker in their batch, and are committed after the
// appends submitted before them.
func TestKVWithAppliedIndex(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	kv := s.KV("shardkv/3")
	errc := make(chan error, 2)
	var first uint64
	if err := s.Submit(AppendRequest{Stream: "a", Records: []Record{rec("t", "1")}, AppliedLog: "shard-3", AppliedIndex: 5,
		Done: func(_ uint64, err error) { errc <- err }}); err != nil {
		t.Fatal(err)
	}
	if err := kv.SubmitRequest(KVRequest{Writes: []KVWrite{{Key: []byte("k"), Value: []byte("v")}}, NoSync: true,
		AppliedLog: "shard-3", AppliedIndex: 6, Done: func(err error) {
			// Committed after the append before it.
			if info, e := s.DescribeStream("a"); e == nil {
				first = info.NextOffset
			}
			errc <- err
		}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if first != 1 {
		t.Fatalf("the write was committed before the append submitted before it (next offset %d)", first)
	}
	check := func(s *Store) {
		t.Helper()
		if got, err := s.AppliedIndexOf("shard-3"); err != nil || got != 6 {
			t.Fatalf("applied index %d %v, want 6", got, err)
		}
		if v, ok, err := s.KV("shardkv/3").Get([]byte("k")); err != nil || !ok || string(v) != "v" {
			t.Fatalf("get: %q %v %v", v, ok, err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openTest(t, dir, nil))
}

// TestForgetApplied: forgetting markers deletes them (durably), leaves the
// other logs' markers, and a marker set again afterwards counts from 0.
func TestForgetApplied(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	mark := func(log string, index uint64) {
		t.Helper()
		errc := make(chan error, 1)
		if err := s.Submit(AppendRequest{AppliedLog: log, AppliedIndex: index, Done: func(_ uint64, err error) { errc <- err }}); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	want := func(s *Store, log string, index uint64) {
		t.Helper()
		if got, err := s.AppliedIndexOf(log); err != nil || got != index {
			t.Fatalf("%s: applied index %d %v, want %d", log, got, err, index)
		}
	}
	mark("shard-1", 9)
	mark("shard-1/restore", 12)
	mark("shard-2", 4)
	if err := s.ForgetApplied(ctx, "shard-1", "shard-1/restore"); err != nil {
		t.Fatal(err)
	}
	want(s, "shard-1", 0)
	want(s, "shard-1/restore", 0)
	want(s, "shard-2", 4)
	mark("shard-1", 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, nil)
	want(s, "shard-1", 2)
	want(s, "shard-1/restore", 0)
	want(s, "shard-2", 4)
}

// TestStreamChangeSetsItsMarker: a creation or deletion given a marker
// sets it with the change, kept across a reopen; one that fails (the
// stream exists, or does not) leaves it.
func TestStreamChangeSetsItsMarker(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	want := func(s *Store, index uint64) {
		t.Helper()
		if got, err := s.AppliedIndexOf("shard-1/admin"); err != nil || got != index {
			t.Fatalf("applied index %d %v, want %d", got, err, index)
		}
	}
	at := time.Unix(1_700_000_000, 0)
	if _, err := s.CreateStreamApplied(ctx, "a", Retention{}, at, "shard-1/admin", 3); err != nil {
		t.Fatal(err)
	}
	want(s, 3)
	if _, err := s.CreateStreamApplied(ctx, "a", Retention{}, at, "shard-1/admin", 5); !errors.Is(err, ErrStreamExists) {
		t.Fatalf("second creation: %v, want ErrStreamExists", err)
	}
	want(s, 3)
	if err := s.DeleteStreamApplied(ctx, "b", "shard-1/admin", 6); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("deletion of a missing stream: %v, want ErrStreamNotFound", err)
	}
	want(s, 3)
	if err := s.DeleteStreamApplied(ctx, "a", "shard-1/admin", 7); err != nil {
		t.Fatal(err)
	}
	want(s, 7)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, nil)
	want(s, 7)
	if info, err := s.CreateStreamAt(ctx, "a", Retention{}, at); err != nil || !info.CreatedAt.Equal(at) {
		t.Fatalf("creation after the reopen: %+v %v", info, err)
	}
	want(s, 7)
}
