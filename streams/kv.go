package streams

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// KV is a namespace of small key/value state kept in the store's database for
// other packages (consumer-group progress, broker state). Writes go through
// the committer, so they share group commit and ordering with appends.
type KV struct {
	s      *Store
	prefix []byte
}

// KVWrite is one change to a KV namespace.
type KVWrite struct {
	Key   []byte
	Value []byte
	// Delete removes Key; DeletePrefix removes every key starting with Key.
	Delete       bool
	DeletePrefix bool
}

// KV returns the key/value namespace ns (which must not contain a 0 byte).
func (s *Store) KV(ns string) *KV {
	p := append([]byte{tagKV}, ns...)
	return &KV{s: s, prefix: append(p, 0)}
}

func (kv *KV) key(k []byte) []byte {
	return append(append(make([]byte, 0, len(kv.prefix)+len(k)), kv.prefix...), k...)
}

// Get returns the value of key, or ok=false if it is absent.
func (kv *KV) Get(key []byte) (value []byte, ok bool, err error) {
	db, unlock, err := kv.s.reader()
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	v, closer, err := db.Get(kv.key(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

// Scan calls fn for every key starting with prefix, in key order. It reads
// them all first (KV namespaces hold small state), so fn runs without locks.
func (kv *KV) Scan(prefix []byte, fn func(key, value []byte) error) error {
	type pair struct{ k, v []byte }
	var pairs []pair
	err := func() error {
		db, unlock, err := kv.s.reader()
		if err != nil {
			return err
		}
		defer unlock()
		lo := kv.key(prefix)
		iter, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return err
		}
		defer iter.Close()
		for iter.First(); iter.Valid(); iter.Next() {
			v, err := iter.ValueAndErr()
			if err != nil {
				return err
			}
			pairs = append(pairs, pair{bytes.Clone(iter.Key()[len(kv.prefix):]), bytes.Clone(v)})
		}
		return iter.Error()
	}()
	if err != nil {
		return err
	}
	for _, p := range pairs {
		if err := fn(p.k, p.v); err != nil {
			return err
		}
	}
	return nil
}

// Submit queues writes to be committed atomically and returns at once; done
// (called by the committer, must not block) reports the outcome.
// noSync says the caller does not need the writes synced before done.
func (kv *KV) Submit(writes []KVWrite, noSync bool, done func(error)) error {
	return kv.SubmitRequest(KVRequest{Writes: writes, NoSync: noSync, Done: done})
}

// KVRequest asks the store to commit writes to a namespace atomically.
type KVRequest struct {
	Writes []KVWrite
	// NoSync says the caller does not need the writes synced before Done.
	NoSync bool
	// AppliedIndex, if non-zero, is recorded as the applied-index marker
	// of the replicated log AppliedLog in the same batch as the writes,
	// as for AppendRequest (a replicated log in front of the namespace:
	// after a crash it applies its entries again from the marker on).
	AppliedIndex uint64
	AppliedLog   string
	// Done, if not nil, is called once by the committer with
	// the outcome; it must not block.
	Done func(error)
}

// SubmitRequest queues req and returns at once. Writes are queued with
// the store's appends: they are committed after everything submitted
// before them.
func (kv *KV) SubmitRequest(req KVRequest) error {
	return kv.s.queue.push(kv.op(req))
}

// op makes the committer's op of req.
func (kv *KV) op(req KVRequest) *op {
	ws := make([]KVWrite, len(req.Writes))
	for i, w := range req.Writes {
		w.Key = kv.key(w.Key)
		ws[i] = w
	}
	done := req.Done
	return &op{kind: opKV, kv: ws, noSync: req.NoSync,
		req: AppendRequest{AppliedLog: req.AppliedLog, AppliedIndex: req.AppliedIndex},
		done: func(_ uint64, err error) {
			if done != nil {
				done(err)
			}
		}}
}

// Write commits writes atomically and waits until they are durable.
func (kv *KV) Write(ctx context.Context, writes ...KVWrite) error {
	errc := make(chan error, 1)
	if err := kv.Submit(writes, false, func(err error) { errc <- err }); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *group) writeKV(writes []KVWrite) error {
	for _, w := range writes {
		var err error
		switch {
		case w.DeletePrefix:
			err = g.batch.DeleteRange(w.Key, prefixEnd(w.Key), nil)
		case w.Delete:
			err = g.batch.Delete(w.Key, nil)
		default:
			err = g.batch.Set(w.Key, w.Value, nil)
			g.bytes += len(w.Key) + len(w.Value)
		}
		if err != nil {
			return fmt.Errorf("kv write: %w", err)
		}
	}
	return nil
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// AppliedIndex returns the applied-index marker of the unnamed log (0 if
// never set).
func (s *Store) AppliedIndex() (uint64, error) { return s.AppliedIndexOf("") }

// AppliedIndexOf returns the applied-index marker of replicated log name
// (AppendRequest.AppliedLog; 0 if never set).
func (s *Store) AppliedIndexOf(name string) (uint64, error) {
	db, unlock, err := s.reader()
	if err != nil {
		return 0, err
	}
	defer unlock()
	v, closer, err := db.Get(appliedKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: applied index", ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}
