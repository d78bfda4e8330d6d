package cq

import (
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// countingReader serves a stream of n records and counts the reads.
type countingReader struct {
	n     uint64
	mu    sync.Mutex // guards reads
	reads []uint64   // the offsets read from
}

func (c *countingReader) Read(_ string, from uint64, opts streams.ReadOptions) ([]streams.Record, error) {
	c.mu.Lock()
	c.reads = append(c.reads, from)
	c.mu.Unlock()
	var out []streams.Record
	for o := from; o < c.n && len(out) < opts.MaxRecords; o++ {
		out = append(out, streams.Record{Offset: o})
	}
	return out, nil
}

func (c *countingReader) DescribeStream(string) (streams.StreamInfo, error) {
	return streams.StreamInfo{}, nil
}
func (c *countingReader) Notify(string) (<-chan struct{}, uint64, error) { return nil, c.n, nil }
func (c *countingReader) OffsetAt(string, time.Time) (uint64, error)     { return 0, nil }

func (c *countingReader) readsFrom() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.reads...)
}

// TestReadAhead: the batches are those a direct read gives, in order; a
// full batch starts the read of the next, a short one (the end of the
// input) does not; a read elsewhere than where the loop went on drops the
// batch read ahead and reads there.
func TestReadAhead(t *testing.T) {
	r := &countingReader{n: 2*readBatch + 10}
	a := newReadAhead(r, "in")
	var pos uint64
	for pos < r.n {
		recs, err := a.read(pos)
		if err != nil || len(recs) == 0 || recs[0].Offset != pos {
			t.Fatalf("read at %d: %d records, %v", pos, len(recs), err)
		}
		pos = recs[len(recs)-1].Offset + 1
	}
	if got := r.readsFrom(); len(got) != 3 || got[0] != 0 || got[1] != readBatch || got[2] != 2*readBatch {
		t.Fatalf("reads from %v", got)
	}
	if a.pending != nil {
		t.Fatal("a read ahead after a short batch")
	}
	// At the end: nothing more, and nothing read ahead.
	if recs, err := a.read(pos); err != nil || len(recs) != 0 || a.pending != nil {
		t.Fatalf("at the end: %d records, %v, pending %v", len(recs), err, a.pending != nil)
	}
	// A seek: the batch read ahead from readBatch is dropped.
	if _, err := a.read(0); err != nil || a.pending == nil || a.from != readBatch {
		t.Fatalf("read from 0: %v, pending from %d", err, a.from)
	}
	recs, err := a.read(5)
	if err != nil || len(recs) != readBatch || recs[0].Offset != 5 {
		t.Fatalf("read at 5 after reading ahead from %d: %d records from %d, %v", readBatch, len(recs), recs[0].Offset, err)
	}
}
