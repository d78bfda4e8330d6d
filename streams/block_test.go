package streams

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// rawValues returns the stored values of stream id's records, by the
// offset their key holds.
func rawValues(t *testing.T, s *Store, id uint64) map[uint64][]byte {
	t.Helper()
	db, unlock, err := s.reader()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: recordKey(id, 0), UpperBound: streamRecordsEnd(id)})
	if err != nil {
		t.Fatal(err)
	}
	defer iter.Close()
	out := map[uint64][]byte{}
	for iter.First(); iter.Valid(); iter.Next() {
		out[offsetFromKey(iter.Key())] = append([]byte(nil), iter.Value()...)
	}
	return out
}

func numbered(n, from int) []Record {
	var recs []Record
	for i := from; i < from+n; i++ {
		recs = append(recs, rec("t", fmt.Sprint(i)))
	}
	return recs
}

// checkDense reads the whole stream from every offset in [first, next) and
// checks that each read starts there and the payloads are the offsets.
func checkDense(t *testing.T, s *Store, name string, first, next uint64) {
	t.Helper()
	for from := uint64(0); from <= next; from++ {
		recs, err := s.Read(name, from, ReadOptions{MaxRecords: 10000})
		if err != nil {
			t.Fatalf("read from %d: %v", from, err)
		}
		want := max(from, first)
		if uint64(len(recs)) != next-min(want, next) {
			t.Fatalf("read from %d: %d records, want %d", from, len(recs), next-min(want, next))
		}
		for i, r := range recs {
			if r.Offset != want+uint64(i) || string(r.Payload) != fmt.Sprint(r.Offset) {
				t.Fatalf("read from %d: record %d is offset %d payload %q", from, i, r.Offset, r.Payload)
			}
		}
	}
}

// TestBlocksHoldAGroupsRecords: the records of one append share a key, a
// lone record is stored as before blocks (the record alone), and reads,
// copies and timestamp lookups start at any offset, also inside a block
// and across blocks of both kinds, before and after a reopen.
func TestBlocksHoldAGroupsRecords(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock.ns.Store(base.UnixNano())
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.Now = clock.now })
	// offsets 0-9 in one append, 10 alone, 11-30 in one append, 31 alone;
	// each append a second after the one before.
	for _, n := range []int{10, 1, 20, 1} {
		info, _ := s.DescribeStream("b")
		if _, err := s.Append(ctx, "b", numbered(n, int(info.NextOffset))...); err != nil {
			t.Fatal(err)
		}
		clock.advance(time.Second)
	}
	info, _ := s.DescribeStream("b")
	raw := rawValues(t, s, info.ID)
	if len(raw) != 4 || raw[0][0] != blockVersion1 || raw[11][0] != blockVersion1 {
		t.Fatalf("keys %v: want blocks at 0 and 11", keysOf(raw))
	}
	if !bytes.Equal(raw[10][:1], []byte{recordVersion1}) || raw[31][0] != recordVersion1 {
		t.Fatalf("a lone record is not stored alone: %x", raw[10])
	}
	for reopen := 0; reopen < 2; reopen++ {
		info, _ := s.DescribeStream("b")
		if info.FirstOffset != 0 || info.NextOffset != 32 || info.Records != 32 {
			t.Fatalf("reopen %d: %+v", reopen, info)
		}
		checkDense(t, s, "b", 0, 32)
		p, err := s.ReadStored("b", 5, 13, 100, 1<<20)
		if err != nil || p.From != 5 || len(p.Records) != 8 {
			t.Fatalf("stored page from 5 to 13: from %d, %d records, %v", p.From, len(p.Records), err)
		}
		for i, b := range p.Records {
			r, err := decodeRecord(b, 5+uint64(i))
			if err != nil || string(r.Payload) != fmt.Sprint(5+i) {
				t.Fatalf("stored record %d: %+v %v", 5+i, r, err)
			}
		}
		for _, c := range []struct {
			at   time.Duration
			want uint64
		}{{0, 0}, {500 * time.Millisecond, 10}, {time.Second, 10}, {2 * time.Second, 11}, {3 * time.Second, 31}, {time.Hour, 32}} {
			if got, err := s.OffsetAt("b", base.Add(c.at)); err != nil || got != c.want {
				t.Fatalf("reopen %d: OffsetAt(+%s) = %d, %v; want %d", reopen, c.at, got, err, c.want)
			}
		}
		_ = s.Close()
		s = openTest(t, dir, func(o *Options) { o.Now = clock.now })
	}
}

func keysOf(m map[uint64][]byte) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestBlockIsCutAtItsLimit: an append larger than a block fills several,
// each within the limit, and reads back whole.
func TestBlockIsCutAtItsLimit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	recs := numbered(300, 0)
	for i := range recs {
		recs[i].Topic = strings.Repeat("t", 400)
	}
	if _, err := s.Append(ctx, "big", recs...); err != nil {
		t.Fatal(err)
	}
	info, _ := s.DescribeStream("big")
	raw := rawValues(t, s, info.ID)
	if len(raw) < 4 {
		t.Fatalf("%d blocks for %d bytes", len(raw), info.Bytes)
	}
	for k, v := range raw {
		if len(v) > maxBlockBytes {
			t.Fatalf("block at %d: %d bytes", k, len(v))
		}
	}
	checkDense(t, s, "big", 0, 300)
}

// TestTrimInsideABlock: retention may cut a block; the records before the
// cut are never read again, the block stays until a later trim passes it,
// and the counts hold across a reopen.
func TestTrimInsideABlock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	if _, err := s.CreateStream(ctx, "r", Retention{MaxRecords: 25}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{20, 20} { // blocks at 0 and 20
		info, _ := s.DescribeStream("r")
		if _, err := s.Append(ctx, "r", numbered(n, int(info.NextOffset))...); err != nil {
			t.Fatal(err)
		}
	}
	if removed, err := s.EnforceRetention(ctx); err != nil || removed != 15 {
		t.Fatalf("first trim: %d removed, %v", removed, err)
	}
	info, _ := s.DescribeStream("r")
	if raw := rawValues(t, s, info.ID); len(raw) != 2 {
		t.Fatalf("blocks after a trim inside the first: %v", keysOf(raw))
	}
	checkDense(t, s, "r", 15, 40)
	p, err := s.ReadStored("r", 0, 0, 100, 1<<20)
	if err != nil || p.From != 15 || len(p.Records) != 25 {
		t.Fatalf("stored page: from %d, %d records, %v", p.From, len(p.Records), err)
	}
	_ = s.Close()
	s = openTest(t, dir, nil)
	info, _ = s.DescribeStream("r")
	if info.FirstOffset != 15 || info.NextOffset != 40 || info.Records != 25 {
		t.Fatalf("after reopen: %+v", info)
	}
	checkDense(t, s, "r", 15, 40)
	if _, err := s.Append(ctx, "r", numbered(10, 40)...); err != nil {
		t.Fatal(err)
	}
	if removed, err := s.EnforceRetention(ctx); err != nil || removed != 10 {
		t.Fatalf("second trim: %d removed, %v", removed, err)
	}
	if raw := rawValues(t, s, info.ID); len(raw) != 2 || raw[0] != nil {
		t.Fatalf("blocks after the trim passed the first: %v", keysOf(raw))
	}
	checkDense(t, s, "r", 25, 50)
	if info, _ := s.DescribeStream("r"); info.Bytes != sumStored(t, s, "r") {
		t.Fatalf("bytes %d, records kept take %d", info.Bytes, sumStored(t, s, "r"))
	}
}

func sumStored(t *testing.T, s *Store, name string) int64 {
	var n int64
	for _, b := range storedAll(t, s, name).Records {
		n += int64(len(b))
	}
	return n
}

// TestInstallPastABlock: an install that skips records a peer no longer
// holds drops the stream's blocks, also one that began before the first
// record kept.
func TestInstallPastABlock(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, t.TempDir(), nil)
	if _, err := src.Append(ctx, "s", numbered(50, 0)...); err != nil {
		t.Fatal(err)
	}
	dst := openTest(t, t.TempDir(), nil)
	if _, err := dst.CreateStream(ctx, "s", Retention{MaxRecords: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Append(ctx, "s", numbered(10, 0)...); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := src.ReadStored("s", 40, 0, 100, 1<<20)
	if err != nil || len(p.Records) != 10 {
		t.Fatalf("page: %d records, %v", len(p.Records), err)
	}
	if err := dst.Install(ctx, InstallRequest{Stream: "s", At: 40, Skip: true, Records: p.Records}); err != nil {
		t.Fatal(err)
	}
	info, _ := dst.DescribeStream("s")
	if raw := rawValues(t, dst, info.ID); len(raw) != 1 || raw[40] == nil {
		t.Fatalf("keys after the install: %v", keysOf(raw))
	}
	checkDense(t, dst, "s", 40, 50)
	if got := storedAll(t, dst, "s"); !equalPages(got.Records, p.Records) {
		t.Fatal("installed records differ from the source's")
	}
}

func equalPages(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestCorruptBlocks: a block that does not parse is reported as corrupt,
// never read as records.
func TestCorruptBlocks(t *testing.T) {
	ok := appendRecord(nil, &Record{Topic: "t", Payload: []byte("x")}, 1)
	good := append([]byte{blockVersion1, byte(len(ok))}, ok...)
	for name, v := range map[string][]byte{
		"empty":            {},
		"empty block":      {blockVersion1},
		"unknown version":  append([]byte{0x7f}, ok...),
		"length past end":  append([]byte{blockVersion1, byte(len(ok) + 1)}, ok...),
		"zero length":      {blockVersion1, 0},
		"bad length":       {blockVersion1, 0xff},
		"trailing garbage": append(append([]byte(nil), good...), 0x05, 1),
	} {
		err := eachInBlock(v, 7, func(uint64, []byte) (bool, error) { return true, nil })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	var offs []uint64
	if err := eachInBlock(good, 7, func(off uint64, rec []byte) (bool, error) {
		offs = append(offs, off)
		return true, nil
	}); err != nil || len(offs) != 1 || offs[0] != 7 {
		t.Fatalf("good block: %v %v", offs, err)
	}
}

// FuzzEachInBlock: any stored value either fails as corrupt or yields
// records at dense offsets from the key's, each within the value, and a
// block rebuilt from them yields the same.
func FuzzEachInBlock(f *testing.F) {
	one := appendRecord(nil, &Record{Topic: "a/b", Payload: []byte("x")}, 5)
	f.Add(one)
	f.Add(append([]byte{blockVersion1, byte(len(one))}, one...))
	f.Add([]byte{blockVersion1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		var recs [][]byte
		err := eachInBlock(v, 100, func(off uint64, rec []byte) (bool, error) {
			if off != 100+uint64(len(recs)) {
				t.Fatalf("offset %d after %d records", off, len(recs))
			}
			recs = append(recs, rec)
			return true, nil
		})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if v[0] == recordVersion1 {
			return
		}
		again := []byte{blockVersion1}
		for _, r := range recs {
			again = binary.AppendUvarint(again, uint64(len(r)))
			again = append(again, r...)
		}
		if !bytes.Equal(again, v) && len(recs) > 0 {
			// Non-minimal varints are accepted; the records must still agree.
			var back [][]byte
			_ = eachInBlock(again, 100, func(_ uint64, rec []byte) (bool, error) { back = append(back, rec); return true, nil })
			if !equalPages(back, recs) {
				t.Fatal("rebuilt block yields other records")
			}
		}
	})
}

// TestOffsetAtOfAnEmptyStream: nothing to search, the next offset.
func TestOffsetAtOfAnEmptyStream(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	if _, err := s.CreateStream(context.Background(), "e", Retention{}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.OffsetAt("e", time.Now()); err != nil || got != 0 {
		t.Fatalf("OffsetAt of an empty stream: %d, %v", got, err)
	}
}
