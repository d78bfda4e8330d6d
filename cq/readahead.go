package cq

import "github.com/mqstream/mqstream/streams"

// readAhead reads a query's input one batch ahead while the query works
// on the batch before: catching up (a new query from the first record, a
// restart rebuilding its open windows, a view rebuilt at start-up) then
// uses both cores, reading (Pebble iteration, decoding) beside
// evaluating. A batch is read ahead only after a full one, so a query at
// the end of its input reads nothing more than before.
//
// It is owned by one loop (no lock). A fetch still running when the loop
// ends finishes on its own and is dropped (its channel is buffered).
type readAhead struct {
	reader Reader
	stream string
	// pending is the batch being read from offset from; nil: none.
	pending chan fetched
	from    uint64
}

type fetched struct {
	recs []streams.Record
	err  error
}

func newReadAhead(r Reader, stream string) *readAhead {
	return &readAhead{reader: r, stream: stream}
}

// read returns the records of the stream from offset from on, at most
// readBatch: the batch read ahead when it starts there, else read now.
func (a *readAhead) read(from uint64) ([]streams.Record, error) {
	var f fetched
	if a.pending != nil {
		f = <-a.pending
		a.pending = nil
		if a.from != from { // the loop went elsewhere (a seek): not ours
			f = fetched{}
			f.recs, f.err = a.fetch(from)
		}
	} else {
		f.recs, f.err = a.fetch(from)
	}
	if f.err == nil && len(f.recs) == readBatch {
		next := f.recs[len(f.recs)-1].Offset + 1
		ch := make(chan fetched, 1)
		a.pending, a.from = ch, next
		go func() {
			recs, err := a.fetch(next)
			ch <- fetched{recs, err}
		}()
	}
	return f.recs, f.err
}

func (a *readAhead) fetch(from uint64) ([]streams.Record, error) {
	return a.reader.Read(a.stream, from, streams.ReadOptions{MaxRecords: readBatch})
}
