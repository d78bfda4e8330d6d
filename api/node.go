package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/streams"
)

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var records, bytes int64
	list := s.opts.Store.ListStreams()
	for _, info := range list {
		records += info.Records
		bytes += info.Bytes
	}
	info := s.opts.Broker.Server().Info
	out := map[string]any{
		"version": s.opts.Version,
		"counts": map[string]any{
			"streams":       len(list),
			"records":       records,
			"bytes":         bytes,
			"groups":        len(s.opts.Groups.Groups(r.Context())),
			"clients":       info.ClientsConnected,
			"subscriptions": info.Subscriptions,
			"retained":      info.Retained,
		},
		"ingest": map[string]int64{"stored": s.opts.Broker.Stats().Stored, "refused": s.opts.Broker.Stats().Refused},
	}
	if n := s.opts.Node; n != nil {
		out["id"] = n.ID()
		out["ready"] = n.Ready()
		out["started_at"] = n.StartedAt().UTC().Format(time.RFC3339)
		out["uptime_seconds"] = int64(time.Since(n.StartedAt()).Seconds())
		out["listeners"] = n.Listeners()
	}
	return http.StatusOK, out, nil
}

// publishIn is a POST /v1/publish body.
type publishIn struct {
	Topic          string                 `json:"topic"`
	Payload        json.RawMessage        `json:"payload"`
	Encoding       string                 `json:"encoding"`
	QoS            byte                   `json:"qos"`
	Retain         bool                   `json:"retain"`
	ContentType    string                 `json:"content_type"`
	ResponseTopic  string                 `json:"response_topic"`
	UserProperties []streams.UserProperty `json:"user_properties"`
}

// publish sends a message through the broker: mapping rules store it (the
// answer comes once it is durable) and subscribers receive it.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var in publishIn
	if err := s.decodeBody(w, r, &in); err != nil {
		return 0, nil, err
	}
	payload, err := decodePayload(in.Payload, in.Encoding)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if in.QoS > 2 {
		return 0, nil, fmt.Errorf("%w: qos %d is not 0, 1 or 2", errBadRequest, in.QoS)
	}
	res, err := s.opts.Broker.Publish(r.Context(), mqtt.Message{Topic: in.Topic, Payload: payload, QoS: in.QoS,
		Retain: in.Retain, ContentType: in.ContentType, ResponseTopic: in.ResponseTopic, UserProperties: in.UserProperties})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, res, nil
}

func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
