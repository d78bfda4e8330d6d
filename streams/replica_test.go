package streams

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// storedAll returns every stored record of a stream.
func storedAll(t *testing.T, s *Store, name string) StoredPage {
	t.Helper()
	p, err := s.ReadStored(name, 0, 0, 1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCopyStoredRecords: records read in their stored form from one store
// and installed in another are the same bytes at the same offsets, with
// the source's timestamps, also after a reopen; the creation time given is
// kept; an install that does not follow the stream's records, or holds a
// record that is not a stored encoding, writes nothing.
func TestCopyStoredRecords(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, t.TempDir(), nil)
	base := time.Unix(1_700_000_000, 0)
	for i := 0; i < 5; i++ {
		// A replica's appends: the leader's timestamp, and the stream
		// auto-created at the first one's.
		if _, err := submitWait(t, src, AppendRequest{Stream: "s", Records: []Record{rec("t", "r"+string(rune('0'+i)))},
			Timestamp: base.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := src.DescribeStream("s")
	if !info.CreatedAt.Equal(base) {
		t.Fatalf("auto-created at %v, want the append's timestamp %v", info.CreatedAt, base)
	}

	dir := t.TempDir()
	dst := openTest(t, dir, nil)
	created := base.Add(-time.Hour)
	if got, err := dst.CreateStreamAt(ctx, "s", Retention{MaxRecords: 100}, created); err != nil || !got.CreatedAt.Equal(created) {
		t.Fatalf("CreateStreamAt: %+v %v", got, err)
	}
	// Two pages of at most three records.
	for from := uint64(0); from < 5; {
		p, err := src.ReadStored("s", from, 0, 3, 1<<20)
		if err != nil || p.From != from || len(p.Records) == 0 {
			t.Fatalf("page from %d: %+v %v", from, p, err)
		}
		req := InstallRequest{Stream: "s", At: p.From, Records: p.Records, AppliedLog: "shard-0", AppliedIndex: 7 + from}
		if err := dst.Install(ctx, req); err != nil {
			t.Fatal(err)
		}
		from += uint64(len(p.Records))
	}
	// Not following the stream's records; a record that is no encoding.
	if err := dst.Install(ctx, InstallRequest{Stream: "s", At: 2, Records: [][]byte{storedAll(t, src, "s").Records[0]}}); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("install before the next offset: %v", err)
	}
	if err := dst.Install(ctx, InstallRequest{Stream: "s", At: 5, Records: [][]byte{storedAll(t, src, "s").Records[0], {9, 9}}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("install of a corrupt record: %v", err)
	}
	if err := dst.Install(ctx, InstallRequest{Stream: "missing", At: 0}); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("install into a missing stream: %v", err)
	}
	check := func(s *Store) {
		t.Helper()
		want, got := storedAll(t, src, "s"), storedAll(t, s, "s")
		if got.From != 0 || len(got.Records) != len(want.Records) {
			t.Fatalf("copy holds %d records from %d, want %d", len(got.Records), got.From, len(want.Records))
		}
		for i := range want.Records {
			if !bytes.Equal(got.Records[i], want.Records[i]) {
				t.Fatalf("record %d differs", i)
			}
		}
		if !got.Stream.LastAppend.Equal(want.Stream.LastAppend) || got.Stream.Bytes != want.Stream.Bytes {
			t.Fatalf("copy: last append %v, %d bytes; source %v, %d bytes", got.Stream.LastAppend, got.Stream.Bytes, want.Stream.LastAppend, want.Stream.Bytes)
		}
		if idx, _ := s.AppliedIndexOf("shard-0"); idx != 10 {
			t.Fatalf("applied index %d, want 10", idx)
		}
	}
	check(dst)
	_ = dst.Close()
	dst = openTest(t, dir, nil)
	check(dst)
	if info, _ := dst.DescribeStream("s"); !info.CreatedAt.Equal(created) {
		t.Fatalf("created at %v after a reopen, want %v", info.CreatedAt, created)
	}
}

// TestInstallSkipsTrimmedRecords: records installed beyond the stream's
// next offset (the ones in between were trimmed on the peer) replace what
// the stream holds, and the stream goes on from there, also after a
// reopen; a newest timestamp given raises the next append's.
func TestInstallSkipsTrimmedRecords(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, t.TempDir(), nil)
	for i := 0; i < 12; i++ {
		if _, err := src.Append(ctx, "s", rec("t", "x")); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	dst := openTest(t, dir, nil)
	for i := 0; i < 3; i++ {
		if _, err := dst.Append(ctx, "s", rec("t", "old")); err != nil {
			t.Fatal(err)
		}
	}
	p, err := src.ReadStored("s", 10, 0, 100, 1<<20)
	if err != nil || p.From != 10 || len(p.Records) != 2 {
		t.Fatalf("page: %+v %v", p, err)
	}
	later := time.Now().Add(time.Hour)
	if err := dst.Install(ctx, InstallRequest{Stream: "s", At: 10, Records: p.Records, LastTimestamp: later}); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("install past the next offset without Skip: %v, want ErrOffsetMismatch", err)
	}
	if err := dst.Install(ctx, InstallRequest{Stream: "s", At: 10, Skip: true, Records: p.Records, LastTimestamp: later}); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		info, _ := s.DescribeStream("s")
		if info.FirstOffset != 10 || info.NextOffset != 12 || info.Bytes != int64(len(p.Records[0])+len(p.Records[1])) {
			t.Fatalf("after the skip: %+v", info)
		}
		recs, err := s.Read("s", 0, ReadOptions{})
		if err != nil || len(recs) != 2 || recs[0].Offset != 10 {
			t.Fatalf("read: %+v %v", recs, err)
		}
	}
	check(dst)
	_ = dst.Close()
	dst = openTest(t, dir, nil)
	check(dst)
	if _, err := submitWait(t, dst, AppendRequest{Stream: "s", Records: []Record{rec("t", "y")}, Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := dst.Read("s", 12, ReadOptions{}); len(recs) != 1 || !recs[0].Timestamp.Equal(later) {
		t.Fatalf("append after the install: %+v, want timestamp %v", recs, later)
	}
}
