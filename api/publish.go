package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/streams"
)

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
