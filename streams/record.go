package streams

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Record is one stored message.
type Record struct {
	// Offset is assigned by the store on append; ignored on input.
	Offset uint64
	// Timestamp is the server time the record was appended, assigned by the
	// store; it never decreases within a stream.
	Timestamp time.Time
	// Topic is the MQTT topic the message was published on (or a topic given
	// over REST).
	Topic string
	// Payload is the message body.
	Payload []byte
	// QoS is the publish QoS (0, 1 or 2).
	QoS byte
	// Retain is the publish retain flag.
	Retain bool
	// ClientID is the publisher's MQTT client id (empty for REST writes).
	ClientID string
	// MQTT 5 properties kept with the record.
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	// PayloadFormat is the MQTT 5 payload format indicator (1 = UTF-8), if HasPayloadFormat.
	PayloadFormat    byte
	HasPayloadFormat bool
	UserProperties   []UserProperty
}

// UserProperty is an MQTT 5 user property (key/value pair; keys may repeat).
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// recordVersion1 is the first (and current) encoding of a record value.
const recordVersion1 = 1

// Flag bits of the encoded record header.
const (
	flagQoSMask       = 0x03
	flagRetain        = 0x04
	flagContentType   = 0x08
	flagUserProps     = 0x10
	flagResponseTopic = 0x20
	flagCorrelation   = 0x40
	flagPayloadFormat = 0x80
)

// encodedSize returns an upper bound of the encoded size of r.
func encodedSize(r *Record) int {
	n := 2 + binary.MaxVarintLen64 + 1 + // version, flags, timestamp, payload format
		3*binary.MaxVarintLen32 + len(r.Topic) + len(r.ClientID) + len(r.ContentType) +
		2*binary.MaxVarintLen32 + len(r.ResponseTopic) + len(r.CorrelationData) +
		binary.MaxVarintLen32 + len(r.Payload)
	for _, up := range r.UserProperties {
		n += 2*binary.MaxVarintLen32 + len(up.Key) + len(up.Value)
	}
	return n
}

// appendRecord appends the version-1 encoding of r (without its offset, which
// lives in the key) to dst, using ts (unix nanoseconds) as the timestamp.
//
// Layout: version(1) flags(1) timestamp(varint) topic client-id
// [content-type] [response-topic] [correlation-data] [payload-format(1)]
// [user-property count, key/value pairs] payload(rest). Strings and byte
// fields are uvarint length-prefixed.
func appendRecord(dst []byte, r *Record, ts int64) []byte {
	flags := r.QoS & flagQoSMask
	if r.Retain {
		flags |= flagRetain
	}
	if r.ContentType != "" {
		flags |= flagContentType
	}
	if len(r.UserProperties) > 0 {
		flags |= flagUserProps
	}
	if r.ResponseTopic != "" {
		flags |= flagResponseTopic
	}
	if len(r.CorrelationData) > 0 {
		flags |= flagCorrelation
	}
	if r.HasPayloadFormat {
		flags |= flagPayloadFormat
	}
	dst = append(dst, recordVersion1, flags)
	dst = binary.AppendVarint(dst, ts)
	dst = appendString(dst, r.Topic)
	dst = appendString(dst, r.ClientID)
	if flags&flagContentType != 0 {
		dst = appendString(dst, r.ContentType)
	}
	if flags&flagResponseTopic != 0 {
		dst = appendString(dst, r.ResponseTopic)
	}
	if flags&flagCorrelation != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(r.CorrelationData)))
		dst = append(dst, r.CorrelationData...)
	}
	if flags&flagPayloadFormat != 0 {
		dst = append(dst, r.PayloadFormat)
	}
	if flags&flagUserProps != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(r.UserProperties)))
		for _, up := range r.UserProperties {
			dst = appendString(dst, up.Key)
			dst = appendString(dst, up.Value)
		}
	}
	return append(dst, r.Payload...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeRecord decodes a record value. The result does not alias b.
func decodeRecord(b []byte, offset uint64) (Record, error) {
	d := decoder{b: b}
	version := d.byte()
	if d.err == nil && version != recordVersion1 {
		return Record{}, fmt.Errorf("%w: offset %d: unknown record version %d", ErrCorrupt, offset, version)
	}
	flags := d.byte()
	ts := d.varint()
	r := Record{
		Offset:   offset,
		QoS:      flags & flagQoSMask,
		Retain:   flags&flagRetain != 0,
		Topic:    d.string(),
		ClientID: d.string(),
	}
	r.Timestamp = time.Unix(0, ts)
	if flags&flagContentType != 0 {
		r.ContentType = d.string()
	}
	if flags&flagResponseTopic != 0 {
		r.ResponseTopic = d.string()
	}
	if flags&flagCorrelation != 0 {
		r.CorrelationData = d.bytes()
	}
	if flags&flagPayloadFormat != 0 {
		r.PayloadFormat = d.byte()
		r.HasPayloadFormat = true
	}
	if flags&flagUserProps != 0 {
		n := d.uvarint()
		if d.err == nil && n > uint64(len(d.b)) {
			d.err = errShort
		}
		if d.err == nil {
			r.UserProperties = make([]UserProperty, 0, n)
			for i := uint64(0); i < n && d.err == nil; i++ {
				r.UserProperties = append(r.UserProperties, UserProperty{Key: d.string(), Value: d.string()})
			}
		}
	}
	if d.err != nil {
		return Record{}, fmt.Errorf("%w: offset %d: %v", ErrCorrupt, offset, d.err)
	}
	r.Payload = append([]byte(nil), d.b...)
	return r, nil
}

// recordTimestamp decodes only the timestamp of an encoded record.
func recordTimestamp(b []byte) (int64, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != recordVersion1 {
		return 0, fmt.Errorf("%w: unknown record version %d", ErrCorrupt, v)
	}
	d.byte()
	ts := d.varint()
	if d.err != nil {
		return 0, fmt.Errorf("%w: %v", ErrCorrupt, d.err)
	}
	return ts, nil
}

var errShort = fmt.Errorf("truncated")

// decoder reads the fields of an encoded value, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) rawBytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.rawBytes()) }

func (d *decoder) bytes() []byte {
	v := d.rawBytes()
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// AppendEncoded appends r's encoding (its stored form, without offset and
// with timestamp ts in unix nanoseconds) to dst: how records travel
// between the replicas of a shard.
func AppendEncoded(dst []byte, r *Record, ts int64) []byte { return appendRecord(dst, r, ts) }

// DecodeRecord decodes a record encoded by AppendEncoded and gives it
// offset; the result does not alias b.
func DecodeRecord(b []byte, offset uint64) (Record, error) { return decodeRecord(b, offset) }
