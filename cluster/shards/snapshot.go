package shards

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/streams"
)

// A snapshot describes a shard's state at a log index: what the log up
// to there made of the shard's streams, without their records. A replica
// whose store holds that state needs nothing more; one that is behind
// (catchup.go) creates and deletes streams to match it and fetches the
// records it lacks from a peer.
//
// Encodings (version byte first):
//
//	1: index (uint64, big endian), append ids (count, then producer and seq
//	   uvarints). The first encoding: no streams, so a replica behind it
//	   cannot catch up.
//	2: index, append ids as in 1, then the shard's streams: count, then per
//	   stream its name (length-prefixed), creation time (varint unix ns),
//	   retention (max age ns, max bytes, max records: varints), next offset
//	   (uvarint) and newest timestamp (varint unix ns, 0 if none).
//	3: as 2, then the shard's key/value namespace (kv.go): count, then per
//	   key, in key order, the key and its value (both length-prefixed).
//	   A snapshot of an older encoding has an empty namespace.
//	4: as 3, then the results of the append ids (dedupe.go): count (that
//	   of the ids, or 0 when none is known), then per id, in the ids'
//	   order, its result encoded as a forwarded append's (forward.go),
//	   length-prefixed; empty when not known. Only successes and the
//	   store's deterministic refusals (a missing stream, a bad name, a
//	   record too large) are written: other errors are not the log's.
//	   A snapshot of an older encoding knows no results: retries of its
//	   ids are answered with offset 0.
//	5: as 4, then the window's floors (dedupe.go): count, then per
//	   producer, the floor that rose longest ago first, the producer and
//	   its floor (uvarints). Written only when the last command entry was
//	   of version 5 (shardState.floorsOn); a snapshot of an older encoding
//	   has no floors, and the state machine counts them afresh from the
//	   next entry of version 5.
const (
	snapshotVersion1 = 1
	snapshotVersion2 = 2
	snapshotVersion3 = 3
	snapshotVersion4 = 4
	snapshotVersion5 = 5
)

// shardState is a decoded snapshot.
type shardState struct {
	index uint64
	ids   []appendID
	// results[i] is ids[i]'s result, nil when not known; results is nil
	// when none is.
	results []*appendResult
	// complete: the snapshot lists the shard's streams (version 2 on).
	complete bool
	streams  []streamState // sorted by name
	kv       []kvPair      // the key/value namespace, sorted by key
	// floorsOn: the last command entry was of version 5 (fsm.floorsOn),
	// and floors are the window's floors, oldest rise first. Encoded in
	// encoding 5, and only then: until the cluster writes entries of
	// version 5, snapshots stay readable by members of earlier versions.
	floorsOn bool
	floors   []producerFloor
}

// kvPair is a key of a shard's key/value namespace and its value.
type kvPair struct{ key, value []byte }

// streamState is one stream of a shard as the log made it: what every
// replica that applied the log up to the snapshot's index holds, except
// for the records retention trimmed (each replica trims on its own).
type streamState struct {
	name      string
	created   int64 // unix ns: tells two streams of one name apart
	retention streams.Retention
	next      uint64 // the offset the next record gets
	lastTS    int64  // the newest record's timestamp (unix ns; 0: none yet)
}

// streamStateOf returns a stream's replicated state as info describes it.
func streamStateOf(info streams.StreamInfo) streamState {
	st := streamState{name: info.Name, created: info.CreatedAt.UnixNano(), retention: info.Retention, next: info.NextOffset}
	if !info.LastAppend.IsZero() {
		st.lastTS = info.LastAppend.UnixNano()
	}
	return st
}

// shardStreams lists the streams of shard (of n) in store, sorted by name.
func shardStreams(store Store, shard, n int) []streamState {
	var out []streamState
	for _, info := range store.ListStreams() { // sorted by name
		if ShardOf(info.Name, n) == shard {
			out = append(out, streamStateOf(info))
		}
	}
	return out
}

func encodeSnapshot(s shardState) []byte {
	if s.floorsOn {
		return encodeSnapshotAs(s, snapshotVersion5)
	}
	return encodeSnapshotAs(s, snapshotVersion4)
}

// encodeSnapshotAs writes s in encoding version (2 to 5), leaving out
// what that encoding lacks: encodeSnapshot, and tests of the older ones.
func encodeSnapshotAs(s shardState, version byte) []byte {
	b := []byte{version}
	b = binary.BigEndian.AppendUint64(b, s.index)
	b = binary.AppendUvarint(b, uint64(len(s.ids)))
	for _, id := range s.ids {
		b = binary.AppendUvarint(b, id.producer)
		b = binary.AppendUvarint(b, id.seq)
	}
	b = binary.AppendUvarint(b, uint64(len(s.streams)))
	for _, st := range s.streams {
		b = appendBytes(b, []byte(st.name))
		b = binary.AppendVarint(b, st.created)
		b = binary.AppendVarint(b, int64(st.retention.MaxAge))
		b = binary.AppendVarint(b, st.retention.MaxBytes)
		b = binary.AppendVarint(b, st.retention.MaxRecords)
		b = binary.AppendUvarint(b, st.next)
		b = binary.AppendVarint(b, st.lastTS)
	}
	if version < snapshotVersion3 {
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(s.kv)))
	for _, p := range s.kv {
		b = appendBytes(b, p.key)
		b = appendBytes(b, p.value)
	}
	if version < snapshotVersion4 {
		return b
	}
	b = appendResults(b, s.ids, s.results)
	if version < snapshotVersion5 {
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(s.floors)))
	for _, f := range s.floors {
		b = binary.AppendUvarint(b, f.producer)
		b = binary.AppendUvarint(b, f.seq)
	}
	return b
}

// appendResults writes the results section of encoding 4.
func appendResults(b []byte, ids []appendID, results []*appendResult) []byte {
	if !slices.ContainsFunc(results, func(r *appendResult) bool { return r != nil }) {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(ids)))
	var buf []byte
	for i := range ids {
		buf = buf[:0]
		if r := results[i]; r != nil && logResult(r.err) {
			buf = encodeForwardResult(r.first, r.err)
		}
		b = appendBytes(b, buf)
	}
	return b
}

// logResult reports whether err (nil included) is an append's result
// that the log alone decides, the same on every replica.
func logResult(err error) bool {
	return err == nil || errors.Is(err, streams.ErrStreamNotFound) || errors.Is(err, streams.ErrStreamExists) ||
		errors.Is(err, streams.ErrInvalidName) || errors.Is(err, streams.ErrRecordTooLarge)
}

func decodeSnapshot(b []byte) (shardState, error) {
	if len(b) < 9 || b[0] < snapshotVersion1 || b[0] > snapshotVersion5 {
		return shardState{}, fmt.Errorf("%w: snapshot header", ErrBadEntry)
	}
	s := shardState{index: binary.BigEndian.Uint64(b[1:9]), complete: b[0] >= snapshotVersion2}
	d := decoder{b: b[9:]}
	n := d.count()
	s.ids = make([]appendID, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		s.ids = append(s.ids, appendID{producer: d.uvarint(), seq: d.uvarint()})
	}
	if s.complete {
		n = d.count()
		s.streams = make([]streamState, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			st := streamState{name: string(d.bytes()), created: d.varint()}
			st.retention = streams.Retention{MaxAge: time.Duration(d.varint()), MaxBytes: d.varint(), MaxRecords: d.varint()}
			st.next, st.lastTS = d.uvarint(), d.varint()
			s.streams = append(s.streams, st)
		}
		if d.err == nil && !sort.SliceIsSorted(s.streams, func(i, j int) bool { return s.streams[i].name < s.streams[j].name }) {
			d.err = fmt.Errorf("streams out of order")
		}
	}
	if b[0] >= snapshotVersion3 {
		n = d.count()
		s.kv = make([]kvPair, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			p := kvPair{key: d.bytes(), value: d.bytes()}
			if d.err == nil && i > 0 && bytes.Compare(s.kv[i-1].key, p.key) >= 0 {
				d.err = fmt.Errorf("key/value pairs out of order")
			}
			s.kv = append(s.kv, p)
		}
	}
	if b[0] >= snapshotVersion4 && d.err == nil {
		s.results, d.err = decodeResults(&d, len(s.ids))
	}
	if b[0] >= snapshotVersion5 && d.err == nil {
		s.floorsOn = true
		n = d.count()
		if d.err == nil && n > maxFloors {
			d.err = fmt.Errorf("%d floors, at most %d", n, maxFloors)
		}
		seen := make(map[uint64]bool, n)
		for i := 0; i < n && d.err == nil; i++ {
			f := producerFloor{producer: d.uvarint(), seq: d.uvarint()}
			if d.err == nil && (f.producer == 0 || seen[f.producer]) {
				d.err = fmt.Errorf("floor %d: producer %d", i, f.producer)
			}
			seen[f.producer] = true
			s.floors = append(s.floors, f)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return shardState{}, fmt.Errorf("%w: snapshot: %v", ErrBadEntry, d.err)
	}
	return s, nil
}

// decodeResults reads the results section of encoding 4 for ids ids.
func decodeResults(d *decoder, ids int) ([]*appendResult, error) {
	n := d.count()
	if d.err != nil || n == 0 {
		return nil, d.err
	}
	if n != ids {
		return nil, fmt.Errorf("%d results for %d append ids", n, ids)
	}
	out := make([]*appendResult, n)
	for i := range out {
		v := d.bytes()
		if d.err != nil {
			return nil, d.err
		}
		if len(v) == 0 {
			continue
		}
		first, err := decodeForwardResult(v)
		if errors.Is(err, ErrBadEntry) || !logResult(err) {
			return nil, fmt.Errorf("result %d: %v", i, err)
		}
		out[i] = &appendResult{first: first, err: err}
	}
	return out, nil
}

// snapshot is a shard's state captured by fsm.Snapshot; Persist writes it.
type snapshot struct {
	state shardState
	store Store
}

// Persist syncs the store, then writes the snapshot: Raft forgets the log
// up to a persisted snapshot, so what the store applied up to there must
// be on disk.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.store.Sync(ctx); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("shards: sync before snapshot: %w", err)
	}
	if _, err := sink.Write(encodeSnapshot(s.state)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
