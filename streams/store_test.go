package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for retention and timestamp tests.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func openTest(t testing.TB, dir string, mod func(*Options)) *Store {
	t.Helper()
	opts := Options{Dir: dir, AutoCreate: true}
	if mod != nil {
		mod(&opts)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rec(topic, payload string) Record { return Record{Topic: topic, Payload: []byte(payload), QoS: 1} }

func TestStreamLifecycle(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), func(o *Options) { o.AutoCreate = false })

	info, err := s.CreateStream(ctx, "temperatures", Retention{MaxRecords: 10})
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "temperatures" || info.Retention.MaxRecords != 10 || info.Records != 0 || info.CreatedAt.IsZero() {
		t.Fatalf("unexpected info %+v", info)
	}
	if _, err := s.CreateStream(ctx, "temperatures", Retention{}); !errors.Is(err, ErrStreamExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	for _, bad := range []string{"", "a/b", "a b", "a+", "#", strings.Repeat("x", 256), "tab\t", string([]byte{0xff})} {
		if _, err := s.CreateStream(ctx, bad, Retention{}); !errors.Is(err, ErrInvalidName) {
			t.Fatalf("create %q: got %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := s.CreateStream(ctx, "neg", Retention{MaxBytes: -1}); err == nil || !strings.Contains(err.Error(), "max_bytes") {
		t.Fatalf("negative retention: %v", err)
	}
	if _, err := s.Append(ctx, "missing", rec("t", "x")); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("append to missing stream without auto-create: %v", err)
	}
	if _, err := s.CreateStream(ctx, "alpha", Retention{}); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, i := range s.ListStreams() {
		names = append(names, i.Name)
	}
	if fmt.Sprint(names) != "[alpha temperatures]" {
		t.Fatalf("list: %v", names)
	}
	if err := s.DeleteStream(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteStream(ctx, "alpha"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.DescribeStream("alpha"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("describe deleted: %v", err)
	}
}

func TestAppendAssignsDenseOffsetsAndKeepsOrder(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	const writers, perWriter = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Each writer keeps many appends in flight at once.
			var inflight sync.WaitGroup
			for i := 0; i < perWriter; i++ {
				inflight.Add(1)
				err := s.Submit(AppendRequest{Stream: "s", Records: []Record{rec(fmt.Sprintf("w/%d", w), fmt.Sprint(i))},
					Done: func(_ uint64, err error) {
						if err != nil {
							t.Errorf("append: %v", err)
						}
						inflight.Done()
					}})
				if err != nil {
					t.Error(err)
					inflight.Done()
				}
			}
			inflight.Wait()
		}(w)
	}
	wg.Wait()
	info, err := s.DescribeStream("s")
	if err != nil {
		t.Fatal(err)
	}
	if info.Records != writers*perWriter || info.FirstOffset != 0 || info.NextOffset != writers*perWriter {
		t.Fatalf("info %+v", info)
	}
	next := map[string]int{}
	var lastTS time.Time
	var offset uint64
	err = s.Scan(ctx, "s", 0, 0, func(r Record) (bool, error) {
		if r.Offset != offset {
			return false, fmt.Errorf("offset %d, want %d", r.Offset, offset)
		}
		offset++
		if r.Timestamp.Before(lastTS) {
			return false, fmt.Errorf("timestamp went back at offset %d", r.Offset)
		}
		lastTS = r.Timestamp
		if got := string(r.Payload); got != fmt.Sprint(next[r.Topic]) {
			return false, fmt.Errorf("writer %s: payload %s, want %d (order broken)", r.Topic, got, next[r.Topic])
		}
		next[r.Topic]++
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if offset != writers*perWriter {
		t.Fatalf("scanned %d records", offset)
	}
}

func TestBatchAppendAndRead(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	var recs []Record
	for i := 0; i < 25; i++ {
		recs = append(recs, rec("t", fmt.Sprint(i)))
	}
	first, err := s.Append(ctx, "b", recs...)
	if err != nil || first != 0 {
		t.Fatalf("append: %d %v", first, err)
	}
	first, err = s.Append(ctx, "b", rec("t", "25"))
	if err != nil || first != 25 {
		t.Fatalf("second append: %d %v", first, err)
	}
	got, err := s.Read("b", 10, ReadOptions{MaxRecords: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].Offset != 10 || string(got[4].Payload) != "14" {
		t.Fatalf("read: %+v", got)
	}
	got, err = s.Read("b", 26, ReadOptions{})
	if err != nil || len(got) != 0 {
		t.Fatalf("read past end: %v %v", got, err)
	}
	got, err = s.Read("b", 0, ReadOptions{MaxBytes: 3})
	if err != nil || len(got) != 3 {
		t.Fatalf("byte-bounded read: %d %v", len(got), err)
	}
	if _, err := s.Read("nope", 0, ReadOptions{}); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("read missing: %v", err)
	}
}

func TestRecordTooLargeIsRefusedAlone(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), func(o *Options) { o.MaxRecordBytes = 1000 })
	done := make(chan error, 2)
	_ = s.Submit(AppendRequest{Stream: "x", Records: []Record{rec("t", "ok")}, Done: func(_ uint64, err error) { done <- err }})
	_ = s.Submit(AppendRequest{Stream: "x", Records: []Record{rec("t", "ok"), rec("t", strings.Repeat("x", 2000))},
		Done: func(_ uint64, err error) { done <- err }})
	if err := <-done; err != nil {
		t.Fatalf("small record: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("large record: %v", err)
	}
	info, _ := s.DescribeStream("x")
	if info.Records != 1 {
		t.Fatalf("a refused request stored records: %+v", info)
	}
	if _, err := s.Append(ctx, "x", rec("t", "after")); err != nil {
		t.Fatal(err)
	}
}

func TestReopenRecoversOffsetsAndCounters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%2), rec("t", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	before := s.ListStreams()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Append(ctx, "s0", rec("t", "late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}

	s = openTest(t, dir, nil)
	after := s.ListStreams()
	if fmt.Sprintf("%+v", before) != fmt.Sprintf("%+v", after) {
		t.Fatalf("state changed across reopen:\n%+v\n%+v", before, after)
	}
	first, err := s.Append(ctx, "s0", rec("t", "next"))
	if err != nil || first != 5 {
		t.Fatalf("offsets do not continue: %d %v", first, err)
	}
	// A new stream never reuses an id.
	info, _ := s.CreateStream(ctx, "new", Retention{})
	for _, b := range before {
		if b.ID == info.ID {
			t.Fatalf("stream id %d reused", info.ID)
		}
	}
}

func TestDeleteRemovesRecordsAndRecreateStartsAtZero(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	for i := 0; i < 5; i++ {
		if _, err := s.Append(ctx, "d", rec("t", "x")); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := s.DescribeStream("d")
	if err := s.DeleteStream(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	first, err := s.Append(ctx, "d", rec("t", "fresh"))
	if err != nil || first != 0 {
		t.Fatalf("recreated stream: %d %v", first, err)
	}
	recs, _ := s.Read("d", 0, ReadOptions{})
	if len(recs) != 1 || string(recs[0].Payload) != "fresh" {
		t.Fatalf("old records visible after delete: %+v", recs)
	}
	// The old id's records are gone from the database.
	n := 0
	lo, hi := recordKey(old.ID, 0), streamRecordsEnd(old.ID)
	iter, _ := s.db.NewIter(nil)
	for iter.SeekGE(lo); iter.Valid() && string(iter.Key()) < string(hi); iter.Next() {
		n++
	}
	iter.Close()
	if n != 0 {
		t.Fatalf("%d records of the deleted stream remain", n)
	}
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	s := openTest(t, t.TempDir(), func(o *Options) { o.Now = clock.now })

	if _, err := s.CreateStream(ctx, "by-count", Retention{MaxRecords: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateStream(ctx, "by-age", Retention{MaxAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateStream(ctx, "by-bytes", Retention{MaxBytes: 400}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateStream(ctx, "keep", Retention{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		for _, name := range []string{"by-count", "by-age", "by-bytes", "keep"} {
			if _, err := s.Append(ctx, name, rec("t", strings.Repeat("p", 90))); err != nil {
				t.Fatal(err)
			}
		}
		clock.advance(10 * time.Second)
	}
	// Records are at t=0s..90s; now is 100s: max-age 1m keeps those at >= 40s.
	if _, err := s.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(name string, first uint64) {
		t.Helper()
		info, err := s.DescribeStream(name)
		if err != nil {
			t.Fatal(err)
		}
		if info.FirstOffset != first || info.NextOffset != 10 || info.Records != int64(10-first) {
			t.Fatalf("%s: %+v, want first offset %d", name, info, first)
		}
		recs, err := s.Read(name, 0, ReadOptions{})
		if err != nil || len(recs) != int(10-first) || (len(recs) > 0 && recs[0].Offset != first) {
			t.Fatalf("%s: read %d records from %v: %v", name, len(recs), recs, err)
		}
	}
	check("by-count", 7)
	check("by-age", 4)
	check("keep", 0)
	info, _ := s.DescribeStream("by-bytes")
	if info.Bytes > 400 || info.Bytes <= 400-130 {
		t.Fatalf("by-bytes: %d bytes kept: %+v", info.Bytes, info)
	}
	// Offsets continue after trimming.
	if first, err := s.Append(ctx, "by-count", rec("t", "x")); err != nil || first != 10 {
		t.Fatalf("append after trim: %d %v", first, err)
	}
}

func TestOffsetAtBisectsTimestamps(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock.ns.Store(base.UnixNano())
	s := openTest(t, t.TempDir(), func(o *Options) { o.Now = clock.now })
	for i := 0; i < 100; i++ {
		if _, err := s.Append(ctx, "ts", rec("t", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		clock.advance(time.Second)
	}
	for _, c := range []struct {
		at   time.Duration
		want uint64
	}{{-time.Hour, 0}, {0, 0}, {500 * time.Millisecond, 1}, {42 * time.Second, 42}, {99 * time.Second, 99}, {time.Hour, 100}} {
		got, err := s.OffsetAt("ts", base.Add(c.at))
		if err != nil || got != c.want {
			t.Fatalf("OffsetAt(+%s) = %d, %v; want %d", c.at, got, err, c.want)
		}
	}
	// A clock that goes backwards never makes timestamps decrease.
	clock.advance(-time.Hour)
	if _, err := s.Append(ctx, "ts", rec("t", "late")); err != nil {
		t.Fatal(err)
	}
	recs, _ := s.Read("ts", 99, ReadOptions{})
	if len(recs) != 2 || recs[1].Timestamp.Before(recs[0].Timestamp) {
		t.Fatalf("timestamps: %+v", recs)
	}
}

func TestTailReaderWaitsForRecords(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	if _, err := s.CreateStream(ctx, "tail", Retention{}); err != nil {
		t.Fatal(err)
	}
	got := make(chan []Record, 1)
	go func() {
		recs, err := s.ReadWait(ctx, "tail", 0, ReadOptions{})
		if err != nil {
			t.Error(err)
		}
		got <- recs
	}()
	select {
	case <-got:
		t.Fatal("tail read returned before any record existed")
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := s.Append(ctx, "tail", rec("t", "hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case recs := <-got:
		if len(recs) != 1 || string(recs[0].Payload) != "hello" {
			t.Fatalf("tail read %+v", recs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tail reader not woken")
	}

	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { _, err := s.ReadWait(cctx, "tail", 5, ReadOptions{}); errc <- err }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled tail read: %v", err)
	}
	go func() { _, err := s.ReadWait(ctx, "tail", 5, ReadOptions{}); errc <- err }()
	if err := s.DeleteStream(ctx, "tail"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("tail read on deleted stream: %v", err)
	}
}

func TestKVAndAppliedIndex(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	kv := s.KV("groups")
	if err := kv.Write(ctx, KVWrite{Key: []byte("g1/a"), Value: []byte("1")}, KVWrite{Key: []byte("g1/b"), Value: []byte("2")},
		KVWrite{Key: []byte("g2/a"), Value: []byte("3")}); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := kv.Get([]byte("g1/b")); err != nil || !ok || string(v) != "2" {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	if err := kv.Write(ctx, KVWrite{Key: []byte("g1/"), DeletePrefix: true}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	_ = kv.Scan(nil, func(k, v []byte) error { keys = append(keys, string(k)+"="+string(v)); return nil })
	if fmt.Sprint(keys) != "[g2/a=3]" {
		t.Fatalf("scan after prefix delete: %v", keys)
	}
	if other, _, _ := s.KV("other").Get([]byte("g2/a")); other != nil {
		t.Fatal("namespaces leak")
	}
	done := make(chan error, 1)
	_ = s.Submit(AppendRequest{Stream: "x", Records: []Record{rec("t", "x")}, AppliedIndex: 17, Done: func(_ uint64, err error) { done <- err }})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if idx, err := s.AppliedIndex(); err != nil || idx != 17 {
		t.Fatalf("applied index %d %v", idx, err)
	}
}

func TestSyncPolicies(t *testing.T) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(p.String(), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, AutoCreate: true, Sync: p, SyncInterval: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ {
				if _, err := s.Append(ctx, "p", rec("t", "x")); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir, nil)
			if info, _ := s.DescribeStream("p"); info.Records != 20 {
				t.Fatalf("after clean close: %+v", info)
			}
		})
		if got, err := ParseSyncPolicy(p.String()); err != nil || got != p {
			t.Fatalf("parse %s: %v %v", p, got, err)
		}
	}
	if _, err := ParseSyncPolicy("sometimes"); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

func TestOptionsValidateReportsEveryProblem(t *testing.T) {
	o := Options{Sync: 9, SyncInterval: -1, DefaultRetention: Retention{MaxAge: -1}}
	o.EnsureDefaults()
	err := o.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"dir is empty", "sync policy", "sync interval", "max_age"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestQueueHandsOverEveryOp stresses the committer inbox: many producers, one
// consumer reusing its spare slice; every op must come out exactly once.
func TestQueueHandsOverEveryOp(t *testing.T) {
	var q opQueue
	q.wake = make(chan struct{}, 1)
	const producers, each = 8, 5000
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := q.push(&op{stream: fmt.Sprint(p), trim: trimCmd{from: uint64(i)}}); err != nil {
					t.Error(err)
					return
				}
			}
		}(p)
	}
	go func() { wg.Wait(); q.close() }()
	next := make([]uint64, producers)
	var spare []*op
	total := 0
	for {
		ops, closed := q.take(spare)
		if closed {
			break
		}
		for _, o := range ops {
			var p int
			fmt.Sscan(o.stream, &p)
			if o.trim.from != next[p] {
				t.Fatalf("producer %d: got op %d, want %d", p, o.trim.from, next[p])
			}
			next[p]++
			total++
		}
		spare = ops[:0]
	}
	if total != producers*each {
		t.Fatalf("took %d ops, want %d", total, producers*each)
	}
	if err := q.push(&op{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after close: %v", err)
	}
}
