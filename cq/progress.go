package cq

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Keys of the manager's key/value namespace: a query's definition, its
// progress hints (the watermark of an EMIT FINAL query, the next input
// offset of an EMIT CHANGES one) and its publication progress
// (publish.go).
func defKey(id string) []byte   { return []byte("d/" + id) }
func hintKey(id string) []byte  { return []byte("w/" + id) }
func inputKey(id string) []byte { return []byte("i/" + id) }

// sessionKey keeps the progress hint of a query with session windows:
// its watermark and where its input is read again from.
func sessionKey(id string) []byte { return []byte("s/" + id) }

const defPrefix = "d/"

// forgetProgress deletes every key of query id's progress (not its
// definition).
func forgetProgress(id string) []streams.KVWrite {
	var writes []streams.KVWrite
	for _, k := range [][]byte{hintKey(id), inputKey(id), pubKey(id), sessionKey(id), eventKey(id), joinKey(id), flushKey(id), eventChangesKey(id)} {
		writes = append(writes, streams.KVWrite{Key: k, Delete: true})
	}
	return writes
}

// seqKey keeps the number of the last INSERT INTO query created.
const seqKey = "n/insert"

// definition is what is kept of a query to restore it at start-up.
type definition struct {
	ID      string    `json:"id"`
	SQL     string    `json:"sql"`
	Created time.Time `json:"created_at"`
	// Paused is set by PAUSE QUERY: the query is not run (its progress
	// is kept) until RESUME QUERY.
	Paused bool `json:"paused,omitempty"`
	// PauseError is why the node paused the query itself (its state
	// passed queries.max_state_bytes); RESUME QUERY clears it.
	PauseError string `json:"pause_error,omitempty"`
	// From is the next offset of the output stream when an INSERT INTO
	// query was created: its output records come after it, so the search
	// for its progress stops there.
	From uint64 `json:"sink_from,omitempty"`
	// Start is the input offset a query with START('latest') reads from
	// until it has progress: the source's end when it was created.
	Start uint64 `json:"input_start,omitempty"`
	// Home, in a cluster, is the stream whose shard's leader runs the
	// query and keeps this definition (homes.go); Everywhere says that
	// every node holding that shard runs it too (views).
	Home       string `json:"home,omitempty"`
	Everywhere bool   `json:"everywhere,omitempty"`
}

// User properties of every output record: the query that wrote it and
// its progress once the record's request is durable: the watermark of an
// EMIT FINAL query, the last input offset an EMIT CHANGES query has
// processed. The newest output record of a query is its progress (see
// doc.go).
const (
	propQuery     = "mqstream-query"
	propWatermark = "mqstream-watermark"
	propInput     = "mqstream-input-offset"
	// propResume, with session windows, is where the input is read again
	// from after a restart (unix ns): the start of the oldest session
	// open at the record's watermark.
	propResume = "mqstream-resume"
)

func markers(id, prop string, v int64) []streams.UserProperty {
	return []streams.UserProperty{{Key: propQuery, Value: id}, {Key: prop, Value: strconv.FormatInt(v, 10)}}
}

// markerOf returns the value of prop an output record of query id
// carries.
func markerOf(r *streams.Record, id, prop string) (int64, bool) {
	var q, v string
	for _, p := range r.UserProperties {
		switch p.Key {
		case propQuery:
			q = p.Value
		case prop:
			v = p.Value
		}
	}
	if q != id {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// writtenBy reports whether query id wrote output record r.
func writtenBy(r *streams.Record, id string) bool {
	for _, p := range r.UserProperties {
		if p.Key == propQuery {
			return p.Value == id
		}
	}
	return false
}

func encodeHint(wm int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(wm)) }

func decodeHint(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("cq: progress hint of %d bytes", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// recoverWatermark returns the watermark up to which query id's output is
// durable: the greater of the one its newest output record carries and
// the hint kept in the key/value namespace (written after the output it
// covers was durable, and also when the watermark moved without output).
// ok is false for a query that has made no progress yet.
func recoverWatermark(r Reader, kv KV, id string, sink streamFrom) (wm int64, ok bool, err error) {
	return recoverProgress(r, kv, id, sink, hintKey(id), propWatermark)
}

// recoverInput returns the next input offset of EMIT CHANGES query id:
// after the last one its newest output record covers, or the hint if
// newer (0 for a query that has made no progress).
func recoverInput(r Reader, kv KV, id string, sink streamFrom) (uint64, error) {
	next, ok, err := recoverProgress(r, kv, id, sink, inputKey(id), propInput)
	if !ok || err != nil {
		return 0, err
	}
	return uint64(next), nil
}

// recoverProgress returns the greater of the hint at key and the value of
// prop plus 1 (input offsets) or as is (watermarks) in the query's newest
// output record.
func recoverProgress(r Reader, kv KV, id string, sink streamFrom, key []byte, prop string) (wm int64, ok bool, err error) {
	v, found, err := kv.Get(key)
	if err != nil {
		return 0, false, fmt.Errorf("progress hint: %w", err)
	}
	if found {
		if len(v) == 16 {
			// The output stream's end when the hint was written: output
			// written since, if any, is at or after it; what came before
			// it the hint covers.
			sink.from = max(sink.from, binary.BigEndian.Uint64(v[8:]))
			v = v[:8]
		}
		if wm, err = decodeHint(v); err != nil {
			return 0, false, err
		}
		ok = true
	}
	out, found, err := lastMarker(r, id, sink, prop)
	if err != nil {
		return 0, false, err
	}
	if prop == propInput {
		out++ // the marker is the last offset processed
	}
	if found && (!ok || out > wm) {
		wm, ok = out, true
	}
	return wm, ok, nil
}

// streamFrom is an output stream and the offset before which it holds
// no output of the query (INSERT INTO: the stream's end when the query
// was created; else 0).
type streamFrom struct {
	name string
	from uint64
}

// lastMarker returns the value of prop in the newest output record of
// query id carrying it.
func lastMarker(r Reader, id string, sf streamFrom, prop string) (int64, bool, error) {
	var v int64
	found, err := lastOutput(r, sf, func(rec *streams.Record) bool {
		var ok bool
		v, ok = markerOf(rec, id, prop)
		return ok
	})
	return v, found, err
}

// lastOutput scans the output stream backwards for the newest record
// that is the query's (mine): normally the newest record of all when the
// query is the stream's only writer; with INSERT INTO, others may have
// written after it, and the scan stops at sink.from.
func lastOutput(r Reader, sf streamFrom, mine func(*streams.Record) bool) (bool, error) {
	sink := sf.name
	info, err := r.DescribeStream(sink)
	if errors.Is(err, streams.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	chunk := uint64(64)
	floor := max(info.FirstOffset, sf.from)
	for hi := info.NextOffset; hi > floor; {
		lo := hi - min(chunk, hi-floor)
		var recs []streams.Record
		for from := lo; from < hi; {
			got, err := r.Read(sink, from, streams.ReadOptions{MaxRecords: int(hi - from)})
			if err != nil {
				return false, fmt.Errorf("reading stream %s: %w", sink, err)
			}
			if len(got) == 0 {
				break // trimmed meanwhile
			}
			recs = append(recs, got...)
			from = got[len(got)-1].Offset + 1
		}
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].Offset >= hi {
				continue
			}
			if mine(&recs[i]) {
				return true, nil
			}
		}
		hi = lo
		chunk = min(chunk*2, 4096)
	}
	return false, nil
}

// recoverSessions returns the progress of session query id: the
// watermark up to which its output is durable and where its input is read
// again from (the start of the oldest session open at that watermark),
// from the newest output record or the hint at sessionKey, whichever has
// the greater watermark. ok is false for a query that has made no
// progress yet.
func recoverSessions(r Reader, kv KV, id string, sink streamFrom) (wm, from int64, ok bool, err error) {
	v, found, err := kv.Get(sessionKey(id))
	if err != nil {
		return 0, 0, false, fmt.Errorf("progress hint: %w", err)
	}
	if found {
		if len(v) != 16 && len(v) != 24 {
			return 0, 0, false, fmt.Errorf("cq: session progress hint of %d bytes", len(v))
		}
		wm, from, ok = int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:])), true
		if len(v) == 24 {
			// Output written since the hint is at or after the output
			// stream's end then (see recoverProgress).
			sink.from = max(sink.from, binary.BigEndian.Uint64(v[16:]))
		}
	}
	var owm, ofrom int64
	out, err := lastOutput(r, sink, func(rec *streams.Record) bool {
		var okW, okF bool
		owm, okW = markerOf(rec, id, propWatermark)
		ofrom, okF = markerOf(rec, id, propResume)
		return okW && okF
	})
	if err != nil {
		return 0, 0, false, err
	}
	if out && (!ok || owm > wm) {
		wm, from, ok = owm, ofrom, true
	}
	return wm, from, ok, nil
}

func encodeDefinition(d definition) ([]byte, error) { return json.Marshal(d) }

func decodeDefinition(b []byte) (definition, error) {
	var d definition
	err := json.Unmarshal(b, &d)
	return d, err
}
