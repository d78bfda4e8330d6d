package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// streamJSON is a stream as the API shows it.
type streamJSON struct {
	streams.StreamInfo
	LastOffset *uint64                `json:"last_offset"`
	Retention  retentionJSON          `json:"retention"`
	Counters   streams.StreamCounters `json:"counters"`
	// Where the stream lives in cluster mode (GET /v1/streams/{name}
	// only; absent when the node runs no shards).
	Shard    *int     `json:"shard,omitempty"`
	Leader   *string  `json:"leader,omitempty"`
	Replicas []string `json:"replicas,omitempty"`
}

// retentionJSON shows durations as strings ("168h0m0s") and takes them so.
type retentionJSON struct {
	MaxAge     string `json:"max_age,omitempty"`
	MaxBytes   int64  `json:"max_bytes,omitempty"`
	MaxRecords int64  `json:"max_records,omitempty"`
}

func toStreamJSON(info streams.StreamInfo, c streams.StreamCounters) streamJSON {
	out := streamJSON{StreamInfo: info, Counters: c,
		Retention: retentionJSON{MaxBytes: info.Retention.MaxBytes, MaxRecords: info.Retention.MaxRecords}}
	if info.Retention.MaxAge > 0 {
		out.Retention.MaxAge = info.Retention.MaxAge.String()
	}
	if info.Records > 0 {
		last := info.NextOffset - 1
		out.LastOffset = &last
	}
	return out
}

func (r retentionJSON) parse() (streams.Retention, error) {
	out := streams.Retention{MaxBytes: r.MaxBytes, MaxRecords: r.MaxRecords}
	if r.MaxAge != "" {
		d, err := time.ParseDuration(r.MaxAge)
		if err != nil {
			return out, fmt.Errorf("%w: retention.max_age %q is not a duration like 168h", errBadRequest, r.MaxAge)
		}
		out.MaxAge = d
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("%w: retention: %v", errBadRequest, err)
	}
	return out, nil
}

// streamListing is what a Streams spanning the cluster also offers: its
// listing, with the shards none of whose holders answered.
type streamListing interface {
	Listing() (infos []streams.StreamInfo, unlisted []int)
}

func (s *Server) listStreams(w http.ResponseWriter, r *http.Request) (int, any, error) {
	counters := s.opts.Store.Counters()
	infos, unlisted := s.opts.Store.ListStreams(), []int(nil)
	if l, ok := s.opts.Store.(streamListing); ok {
		infos, unlisted = l.Listing()
	}
	list := []streamJSON{}
	for _, info := range infos {
		list = append(list, toStreamJSON(info, counters[info.Name]))
	}
	out := map[string]any{"streams": list}
	if len(unlisted) > 0 {
		// Partial: say so, as SQL's streams table does.
		warnings := make([]string, len(unlisted))
		for i, shard := range unlisted {
			warnings[i] = fmt.Sprintf("no replica of shard %d answered: its streams are left out", shard)
		}
		out["warnings"] = warnings
	}
	return http.StatusOK, out, nil
}

func (s *Server) createStream(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req struct {
		Name      string        `json:"name"`
		Retention retentionJSON `json:"retention"`
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	if streams.IsReserved(req.Name) {
		return 0, nil, fmt.Errorf("%w: stream names starting with '$' are reserved", errBadRequest)
	}
	ret, err := req.Retention.parse()
	if err != nil {
		return 0, nil, err
	}
	info, err := s.opts.Store.CreateStream(r.Context(), req.Name, ret)
	if err != nil {
		return 0, nil, err
	}
	out := toStreamJSON(info, streams.StreamCounters{})
	s.addPlacement(r, &out)
	return http.StatusCreated, out, nil
}

// addPlacement gives a stream's JSON its shard, leader and replicas in a
// cluster.
func (s *Server) addPlacement(r *http.Request, out *streamJSON) {
	if s.opts.Node == nil {
		return
	}
	if shard, leader, replicas, ok := s.opts.Node.StreamPlacement(r.Context(), out.Name); ok {
		out.Shard, out.Leader, out.Replicas = &shard, &leader, replicas
	}
}

func (s *Server) getStream(w http.ResponseWriter, r *http.Request) (int, any, error) {
	info, err := s.opts.Store.DescribeStream(r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	out := toStreamJSON(info, s.opts.Store.Counters()[info.Name])
	s.addPlacement(r, &out)
	return http.StatusOK, out, nil
}

// deleteStream deletes a stream; where continuous queries run, through
// them, which refuse (409) while some read or write the stream.
func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request) (int, any, error) {
	drop := s.opts.Store.DeleteStream
	if s.opts.Queries != nil {
		drop = s.opts.Queries.DropStream
	}
	if err := drop(r.Context(), r.PathValue("name")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// recordIn is one record of a write request.
type recordIn struct {
	Topic          string                 `json:"topic"`
	Payload        json.RawMessage        `json:"payload"`
	Encoding       string                 `json:"encoding"`
	QoS            *byte                  `json:"qos"`
	Retain         bool                   `json:"retain"`
	ContentType    string                 `json:"content_type"`
	ResponseTopic  string                 `json:"response_topic"`
	UserProperties []streams.UserProperty `json:"user_properties"`
}

// toRecord validates a record of stream name; where names it in errors.
func (s *Server) toRecord(in recordIn, stream, where string) (streams.Record, error) {
	payload, err := decodePayload(in.Payload, in.Encoding)
	if err != nil {
		return streams.Record{}, fmt.Errorf("%w: %s: %v", errBadRequest, where, err)
	}
	if s.opts.MaxPayload > 0 && len(payload) > s.opts.MaxPayload {
		return streams.Record{}, fmt.Errorf("%w: %s: payload of %d bytes exceeds the limit of %d", errTooLarge, where, len(payload), s.opts.MaxPayload)
	}
	rec := streams.Record{Topic: in.Topic, Payload: payload, QoS: 1, Retain: in.Retain,
		ContentType: in.ContentType, ResponseTopic: in.ResponseTopic, UserProperties: in.UserProperties}
	if rec.Topic == "" {
		rec.Topic = stream
	}
	if in.QoS != nil {
		if *in.QoS > 2 {
			return rec, fmt.Errorf("%w: %s.qos: %d is not 0, 1 or 2", errBadRequest, where, *in.QoS)
		}
		rec.QoS = *in.QoS
	}
	return rec, nil
}

// appendRecords writes one record or a batch ({"records": [...]}) and
// answers with the offsets once they are durable; a batch is all or nothing.
func (s *Server) appendRecords(w http.ResponseWriter, r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	// One pass: a batch is {"records": [...]}, a single record is the
	// record's fields at the top level.
	var body struct {
		Records []recordIn `json:"records"`
		recordIn
	}
	if err := s.decodeBody(w, r, &body); err != nil {
		return 0, nil, err
	}
	ins, batch := body.Records, body.Records != nil
	if !batch {
		ins = []recordIn{body.recordIn}
	} else if body.Payload != nil || body.Topic != "" {
		return 0, nil, fmt.Errorf("%w: give either one record or {\"records\": [...]}, not both", errBadRequest)
	}
	if len(ins) == 0 {
		return 0, nil, fmt.Errorf("%w: records is empty", errBadRequest)
	}
	if len(ins) > s.opts.MaxBatch {
		return 0, nil, fmt.Errorf("%w: %d records in one request, at most %d", errTooLarge, len(ins), s.opts.MaxBatch)
	}
	recs := make([]streams.Record, len(ins))
	for i, in := range ins {
		where := "record"
		if batch {
			where = fmt.Sprintf("records[%d]", i)
		}
		var err error
		if recs[i], err = s.toRecord(in, name, where); err != nil {
			return 0, nil, err
		}
	}
	first, err := s.opts.Store.Append(r.Context(), name, recs...)
	if err != nil {
		return 0, nil, err
	}
	offsets := make([]uint64, len(recs))
	for i := range offsets {
		offsets[i] = first + uint64(i)
	}
	return http.StatusOK, map[string]any{"stream": name, "first_offset": first, "count": len(recs), "offsets": offsets}, nil
}

// readRecords returns records from an offset or a time; with Accept:
// text/event-stream it follows the stream live as Server-Sent Events.
func (s *Server) readRecords(w http.ResponseWriter, r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	q := r.URL.Query()
	info, err := s.opts.Store.DescribeStream(name)
	if err != nil {
		return 0, nil, err
	}
	from := info.FirstOffset
	switch {
	case q.Get("from_offset") != "" && q.Get("from_time") != "":
		return 0, nil, fmt.Errorf("%w: give from_offset or from_time, not both", errBadRequest)
	case q.Get("from_offset") != "":
		if from, err = strconv.ParseUint(q.Get("from_offset"), 10, 64); err != nil {
			return 0, nil, fmt.Errorf("%w: from_offset %q is not a number", errBadRequest, q.Get("from_offset"))
		}
	case q.Get("from_time") != "":
		t, err := time.Parse(time.RFC3339Nano, q.Get("from_time"))
		if err != nil {
			return 0, nil, fmt.Errorf("%w: from_time %q is not RFC 3339 (2026-01-02T15:04:05Z)", errBadRequest, q.Get("from_time"))
		}
		if from, err = s.opts.Store.OffsetAt(name, t); err != nil {
			return 0, nil, err
		}
	}
	limit := 100
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > 10_000 {
			return 0, nil, fmt.Errorf("%w: limit %q is not a number in 1..10000", errBadRequest, l)
		}
	}
	if acceptsSSE(r) {
		return 0, nil, s.follow(w, r, name, from)
	}
	recs, err := s.opts.Store.Read(name, from, streams.ReadOptions{MaxRecords: limit})
	if err != nil {
		return 0, nil, err
	}
	out := make([]recordJSON, len(recs))
	next := max(from, info.FirstOffset)
	for i, rec := range recs {
		out[i] = toRecordJSON(rec)
		next = rec.Offset + 1
	}
	return http.StatusOK, map[string]any{"stream": name, "records": out, "next_offset": next}, nil
}
