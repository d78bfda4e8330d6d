package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/mqstream/mqstream/streams"
)

// Payload encodings on the wire.
const (
	encJSON   = "json"   // the payload is a JSON value, stored as its JSON text
	encText   = "text"   // the payload is a JSON string, stored as its UTF-8 bytes
	encBase64 = "base64" // the payload is a base64 string, stored decoded
)

// decodePayload turns a request's payload and encoding into bytes. Without
// an encoding, a JSON string is stored as text and any other JSON value as
// its JSON text.
func decodePayload(raw json.RawMessage, encoding string) ([]byte, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("payload is missing")
	}
	isString := raw[0] == '"'
	switch encoding {
	case "":
		if !isString {
			return compactJSON(raw)
		}
		fallthrough
	case encText:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("encoding %q needs a JSON string payload", encText)
		}
		return []byte(s), nil
	case encJSON:
		return compactJSON(raw)
	case encBase64:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("encoding %q needs a JSON string payload", encBase64)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("payload is not valid base64: %v", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("encoding %q is not one of json, text, base64", encoding)
}

func compactJSON(raw json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("payload is not valid JSON: %v", err)
	}
	return buf.Bytes(), nil
}

// encodePayload chooses how to show a stored payload: as a JSON value if it
// is JSON, as a string if it is UTF-8 text, else base64.
func encodePayload(p []byte) (json.RawMessage, string) {
	if len(p) > 0 && json.Valid(p) {
		return json.RawMessage(p), encJSON
	}
	if utf8.Valid(p) {
		b, _ := json.Marshal(string(p))
		return b, encText
	}
	b, _ := json.Marshal(base64.StdEncoding.EncodeToString(p))
	return b, encBase64
}

// recordJSON is a stored record as the API shows it.
type recordJSON struct {
	Offset         uint64                 `json:"offset"`
	Timestamp      string                 `json:"timestamp"`
	Topic          string                 `json:"topic"`
	Payload        json.RawMessage        `json:"payload"`
	Encoding       string                 `json:"encoding"`
	QoS            byte                   `json:"qos"`
	Retain         bool                   `json:"retain,omitempty"`
	ClientID       string                 `json:"client_id,omitempty"`
	ContentType    string                 `json:"content_type,omitempty"`
	ResponseTopic  string                 `json:"response_topic,omitempty"`
	UserProperties []streams.UserProperty `json:"user_properties,omitempty"`
}

func toRecordJSON(r streams.Record) recordJSON {
	payload, enc := encodePayload(r.Payload)
	return recordJSON{
		Offset: r.Offset, Timestamp: r.Timestamp.UTC().Format("2006-01-02T15:04:05.000000000Z07:00"), Topic: r.Topic,
		Payload: payload, Encoding: enc, QoS: r.QoS, Retain: r.Retain, ClientID: r.ClientID,
		ContentType: r.ContentType, ResponseTopic: r.ResponseTopic, UserProperties: r.UserProperties,
	}
}
