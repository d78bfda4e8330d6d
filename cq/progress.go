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

// Keys of the manager's key/value namespace.
func defKey(id string) []byte  { return []byte("d/" + id) }
func hintKey(id string) []byte { return []byte("w/" + id) }

const defPrefix = "d/"

// definition is what is kept of a query to restore it at start-up.
type definition struct {
	ID      string    `json:"id"`
	SQL     string    `json:"sql"`
	Created time.Time `json:"created_at"`
}

// User properties of every output record: the query that wrote it and
// the query's watermark once the record's request is durable. The newest
// output record of a query is its progress (see doc.go).
const (
	propQuery     = "mqstream-query"
	propWatermark = "mqstream-watermark"
)

func markers(id string, wm int64) []streams.UserProperty {
	return []streams.UserProperty{{Key: propQuery, Value: id}, {Key: propWatermark, Value: strconv.FormatInt(wm, 10)}}
}

// markerOf returns the watermark an output record of query id carries.
func markerOf(r *streams.Record, id string) (int64, bool) {
	var q, w string
	for _, p := range r.UserProperties {
		switch p.Key {
		case propQuery:
			q = p.Value
		case propWatermark:
			w = p.Value
		}
	}
	if q != id {
		return 0, false
	}
	wm, err := strconv.ParseInt(w, 10, 64)
	return wm, err == nil
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
func recoverWatermark(r Reader, kv KV, id, sink string) (wm int64, ok bool, err error) {
	v, found, err := kv.Get(hintKey(id))
	if err != nil {
		return 0, false, fmt.Errorf("progress hint: %w", err)
	}
	if found {
		if wm, err = decodeHint(v); err != nil {
			return 0, false, err
		}
		ok = true
	}
	out, found, err := lastMarker(r, id, sink)
	if err != nil {
		return 0, false, err
	}
	if found && (!ok || out > wm) {
		wm, ok = out, true
	}
	return wm, ok, nil
}

// lastMarker scans the output stream backwards for the newest record of
// query id (normally the newest record of all: the query is the stream's
// only writer).
func lastMarker(r Reader, id, sink string) (int64, bool, error) {
	info, err := r.DescribeStream(sink)
	if errors.Is(err, streams.ErrStreamNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	chunk := uint64(64)
	for hi := info.NextOffset; hi > info.FirstOffset; {
		lo := hi - min(chunk, hi-info.FirstOffset)
		var recs []streams.Record
		for from := lo; from < hi; {
			got, err := r.Read(sink, from, streams.ReadOptions{MaxRecords: int(hi - from)})
			if err != nil {
				return 0, false, fmt.Errorf("reading stream %s: %w", sink, err)
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
			if wm, ok := markerOf(&recs[i], id); ok {
				return wm, true, nil
			}
		}
		hi = lo
		chunk = min(chunk*2, 4096)
	}
	return 0, false, nil
}

func encodeDefinition(d definition) ([]byte, error) { return json.Marshal(d) }

func decodeDefinition(b []byte) (definition, error) {
	var d definition
	err := json.Unmarshal(b, &d)
	return d, err
}
