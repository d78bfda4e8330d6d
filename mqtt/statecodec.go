package mqtt

import (
	"encoding/binary"
	"errors"
	"fmt"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Binary encodings of the broker state kept across restarts (state.go):
// messages (queued deliveries and retained messages), session records,
// subscriptions and in-flight states. Every value starts
// with a version byte; fields are varint-prefixed, so a value is about as
// large as what it holds.

const stateVersion = 1

// errStateCorrupt: a stored value could not be decoded.
var errStateCorrupt = errors.New("mqtt: corrupt broker state")

// Message property presence bits.
const (
	propContentType = 1 << iota
	propResponseTopic
	propCorrelation
	propPayloadFormat
	propUser
	propMessageExpiry
)

// appendMessage appends what a delivery or a retained message needs of pk:
// topic, payload, origin, creation and expiry times, the publisher's
// protocol version, retain flag and the MQTT 5 message properties.
func appendMessage(b []byte, pk *packets.Packet) []byte {
	b = appendStr(b, pk.TopicName)
	b = appendBytes(b, pk.Payload)
	b = appendStr(b, pk.Origin)
	b = binary.AppendVarint(b, pk.Created)
	b = binary.AppendVarint(b, pk.Expiry)
	flags := pk.ProtocolVersion & 0x0f
	if pk.FixedHeader.Retain {
		flags |= 0x10
	}
	b = append(b, flags, pk.FixedHeader.Qos)
	p := &pk.Properties
	var has byte
	if p.ContentType != "" {
		has |= propContentType
	}
	if p.ResponseTopic != "" {
		has |= propResponseTopic
	}
	if len(p.CorrelationData) > 0 {
		has |= propCorrelation
	}
	if p.PayloadFormatFlag {
		has |= propPayloadFormat
	}
	if len(p.User) > 0 {
		has |= propUser
	}
	if p.MessageExpiryInterval > 0 {
		has |= propMessageExpiry
	}
	b = append(b, has)
	if has&propContentType != 0 {
		b = appendStr(b, p.ContentType)
	}
	if has&propResponseTopic != 0 {
		b = appendStr(b, p.ResponseTopic)
	}
	if has&propCorrelation != 0 {
		b = appendBytes(b, p.CorrelationData)
	}
	if has&propPayloadFormat != 0 {
		b = append(b, p.PayloadFormat)
	}
	if has&propUser != 0 {
		b = appendUser(b, p.User)
	}
	if has&propMessageExpiry != 0 {
		b = binary.AppendUvarint(b, uint64(p.MessageExpiryInterval))
	}
	return b
}

// readMessage decodes what appendMessage wrote into a PUBLISH packet.
func readMessage(d *stateDecoder) packets.Packet {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}}
	pk.TopicName = d.str()
	pk.Payload = d.bytes()
	pk.Origin = d.str()
	pk.Created = d.varint()
	pk.Expiry = d.varint()
	flags := d.byte()
	pk.ProtocolVersion = flags & 0x0f
	pk.FixedHeader.Retain = flags&0x10 != 0
	pk.FixedHeader.Qos = d.byte() & 3
	has := d.byte()
	p := &pk.Properties
	if has&propContentType != 0 {
		p.ContentType = d.str()
	}
	if has&propResponseTopic != 0 {
		p.ResponseTopic = d.str()
	}
	if has&propCorrelation != 0 {
		p.CorrelationData = d.bytes()
	}
	if has&propPayloadFormat != 0 {
		p.PayloadFormat, p.PayloadFormatFlag = d.byte(), true
	}
	if has&propUser != 0 {
		p.User = d.user()
	}
	if has&propMessageExpiry != 0 {
		p.MessageExpiryInterval = uint32(d.uvarint())
	}
	return pk
}

// encodeDelivery encodes a queued delivery: its own QoS, RETAIN flag and
// subscription identifiers, then the message (appendMessage), in one
// buffer.
func encodeDelivery(d *delivery) []byte {
	p := d.pk
	b := make([]byte, 0, 32+len(d.subIDs)*2+len(p.TopicName)+len(p.Payload)+len(p.Origin))
	flags := d.qos & 3
	if d.retain {
		flags |= 4
	}
	b = append(b, stateVersion, flags)
	b = binary.AppendUvarint(b, uint64(len(d.subIDs)))
	for _, id := range d.subIDs {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return appendMessage(b, p)
}

// decodeDelivery decodes a queued delivery.
func decodeDelivery(v []byte) (*delivery, error) {
	d := &stateDecoder{b: v}
	if d.byte() != stateVersion {
		return nil, fmt.Errorf("%w: delivery version", errStateCorrupt)
	}
	flags := d.byte()
	out := &delivery{qos: flags & 3, retain: flags&4 != 0}
	if n := d.uvarint(); n > 0 && n <= 1<<16 {
		out.subIDs = make([]int, n)
		for i := range out.subIDs {
			out.subIDs[i] = int(d.uvarint())
		}
	}
	pk := readMessage(d)
	if d.err != nil {
		return nil, d.err
	}
	out.pk = &pk
	return out, nil
}

// encodeRetained encodes a retained message.
func encodeRetained(pk *packets.Packet) []byte {
	return appendMessage([]byte{stateVersion}, pk)
}

func decodeRetained(v []byte) (packets.Packet, error) {
	d := &stateDecoder{b: v}
	if d.byte() != stateVersion {
		return packets.Packet{}, fmt.Errorf("%w: retained version", errStateCorrupt)
	}
	pk := readMessage(d)
	pk.FixedHeader.Retain = true
	return pk, d.err
}

// sessionRecord is what a session keeps of its client across restarts.
type sessionRecord struct {
	ProtocolVersion byte
	Clean           bool // MQTT 3.1.1 clean session (never stored: such sessions end with their connection)
	Username        []byte
	Listener        string
	// Expiry is the MQTT 5 session expiry interval in seconds (MQTT 3.1.1
	// persistent sessions do not expire).
	Expiry            uint32
	ReceiveMaximum    uint16
	MaximumPacketSize uint32
	TopicAliasMaximum uint16
	// DisconnectedAt is when the client went away (unix seconds); 0 while
	// it is connected.
	DisconnectedAt int64
	// Will is the client's will message, if it has one; WillDue (unix
	// seconds) is when a delayed will is published if the client does not
	// come back, 0 if it is not pending.
	Will    *mochi.Will
	WillDue int64
	// Stamp is the claim stamp (claims.go) of the connection that last
	// held the session in a cluster (zero standalone, or written by an
	// earlier version): of two copies of one client's session, kept by
	// two nodes, the one with the newer stamp is the client's latest.
	Stamp rversion
}

func encodeSession(r *sessionRecord) []byte {
	b := []byte{stateVersion, r.ProtocolVersion}
	var flags byte
	if r.Clean {
		flags |= 1
	}
	if r.Will != nil {
		flags |= 2
	}
	if r.Stamp != (rversion{}) {
		flags |= 4 // after the will (earlier versions ignore both)
	}
	b = append(b, flags)
	b = appendBytes(b, r.Username)
	b = appendStr(b, r.Listener)
	b = binary.AppendUvarint(b, uint64(r.Expiry))
	b = binary.AppendUvarint(b, uint64(r.ReceiveMaximum))
	b = binary.AppendUvarint(b, uint64(r.MaximumPacketSize))
	b = binary.AppendUvarint(b, uint64(r.TopicAliasMaximum))
	b = binary.AppendVarint(b, r.DisconnectedAt)
	if w := r.Will; w != nil {
		b = appendStr(b, w.TopicName)
		b = appendBytes(b, w.Payload)
		b = appendUser(b, w.User)
		b = binary.AppendUvarint(b, uint64(w.WillDelayInterval))
		var wf byte = w.Qos & 3
		if w.Retain {
			wf |= 4
		}
		b = append(b, wf)
		b = binary.AppendVarint(b, r.WillDue)
	}
	if flags&4 != 0 {
		b = binary.AppendUvarint(b, r.Stamp.ts)
		b = appendStr(b, r.Stamp.node)
	}
	return b
}

func decodeSession(v []byte) (*sessionRecord, error) {
	d := &stateDecoder{b: v}
	if d.byte() != stateVersion {
		return nil, fmt.Errorf("%w: session version", errStateCorrupt)
	}
	r := &sessionRecord{ProtocolVersion: d.byte()}
	flags := d.byte()
	r.Clean = flags&1 != 0
	r.Username = d.bytes()
	r.Listener = d.str()
	r.Expiry = uint32(d.uvarint())
	r.ReceiveMaximum = uint16(d.uvarint())
	r.MaximumPacketSize = uint32(d.uvarint())
	r.TopicAliasMaximum = uint16(d.uvarint())
	r.DisconnectedAt = d.varint()
	if flags&2 != 0 {
		w := &mochi.Will{Flag: 1}
		w.TopicName = d.str()
		w.Payload = d.bytes()
		w.User = d.user()
		w.WillDelayInterval = uint32(d.uvarint())
		wf := d.byte()
		w.Qos, w.Retain = wf&3, wf&4 != 0
		r.Will = w
		r.WillDue = d.varint()
	}
	if flags&4 != 0 {
		r.Stamp.ts = d.uvarint()
		r.Stamp.node = d.str()
	}
	return r, d.err
}

func encodeSubscription(sub packets.Subscription) []byte {
	flags := sub.Qos&3 | (sub.RetainHandling&3)<<2
	if sub.NoLocal {
		flags |= 0x10
	}
	if sub.RetainAsPublished {
		flags |= 0x20
	}
	b := []byte{stateVersion, flags}
	return binary.AppendUvarint(b, uint64(sub.Identifier))
}

func decodeSubscription(filter string, v []byte) (packets.Subscription, error) {
	d := &stateDecoder{b: v}
	if d.byte() != stateVersion {
		return packets.Subscription{}, fmt.Errorf("%w: subscription version", errStateCorrupt)
	}
	flags := d.byte()
	sub := packets.Subscription{
		Filter:            filter,
		Qos:               flags & 3,
		RetainHandling:    flags >> 2 & 3,
		NoLocal:           flags&0x10 != 0,
		RetainAsPublished: flags&0x20 != 0,
		Identifier:        int(d.uvarint()),
	}
	return sub, d.err
}

// sentState is the state of a delivery sent on an earlier connection and
// not acknowledged: its packet id, and whether it is past PUBREC (only the
// PUBREL is resent).
type sentState struct {
	id     uint16
	pubrel bool
}

func encodeSent(s sentState) []byte {
	b := []byte{stateVersion, byte(s.id >> 8), byte(s.id), 0}
	if s.pubrel {
		b[3] = 1
	}
	return b
}

func decodeSent(v []byte) (sentState, error) {
	if len(v) != 4 || v[0] != stateVersion {
		return sentState{}, fmt.Errorf("%w: in-flight state", errStateCorrupt)
	}
	return sentState{id: binary.BigEndian.Uint16(v[1:3]), pubrel: v[3] == 1}, nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendUser(b []byte, user []packets.UserProperty) []byte {
	b = binary.AppendUvarint(b, uint64(len(user)))
	for _, u := range user {
		b = appendStr(b, u.Key)
		b = appendStr(b, u.Val)
	}
	return b
}

// stateDecoder reads the fields of a value; the first error sticks and
// every later read returns zero values.
type stateDecoder struct {
	b   []byte
	err error
}

func (d *stateDecoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated value", errStateCorrupt)
	}
	d.b = nil
}

func (d *stateDecoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *stateDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stateDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stateDecoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *stateDecoder) str() string { return string(d.raw()) }

func (d *stateDecoder) bytes() []byte {
	v := d.raw()
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *stateDecoder) user() []packets.UserProperty {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]packets.UserProperty, n)
	for i := range out {
		out[i] = packets.UserProperty{Key: d.str(), Val: d.str()}
	}
	return out
}
