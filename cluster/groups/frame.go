package groups

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mqstream/mqstream/internal/bincode"
	"github.com/mqstream/mqstream/streams"
)

// Frames travel over the ordered per-peer channel that also carries
// forwarded MQTT messages; their first byte tells them apart from those
// (package mqtt uses 1..15).
const (
	frameDeliver = 0x40 + iota // dispatcher -> member node: a record
	frameCancel                // dispatcher -> member node: withdraw a delivery
	frameAck                   // member node -> dispatcher: a delivery ended
	frameRoom                  // member node -> dispatcher: the client's room
	frameDetach                // dispatcher -> member node: the membership ended
	frameGone                  // member node -> dispatcher: no such membership here
	frameLast    = frameGone
)

// IsFrame reports whether msg, received over the per-peer channel, is one
// of this package's frames.
func IsFrame(msg []byte) bool { return len(msg) > 0 && msg[0] >= frameDeliver && msg[0] <= frameLast }

// ErrBadFrame: a frame or call does not decode.
var ErrBadFrame = errors.New("groups: malformed frame")

// frame is every frame's content; which fields are used depends on kind.
type frame struct {
	kind   byte
	from   string // the sending node
	ref    uint64 // the attachment (member node's numbering)
	id     uint64 // the delivery (dispatcher's numbering per attachment)
	qos    byte   // deliver
	dup    bool   // deliver
	reason byte   // ack
	room   int64  // ack, room: the client's room when sent
	rec    *streams.Record
}

func encodeFrame(f frame) []byte {
	b := make([]byte, 0, 32+len(f.from))
	b = append(b, f.kind)
	b = bincode.AppendString(b, f.from)
	b = binary.AppendUvarint(b, f.ref)
	switch f.kind {
	case frameDeliver:
		flags := f.qos & 3
		if f.dup {
			flags |= 4
		}
		b = binary.AppendUvarint(b, f.id)
		b = append(b, flags)
		b = binary.AppendUvarint(b, f.rec.Offset)
		return streams.AppendEncoded(b, f.rec, f.rec.Timestamp.UnixNano())
	case frameCancel:
		return binary.AppendUvarint(b, f.id)
	case frameAck:
		b = binary.AppendUvarint(b, f.id)
		b = append(b, f.reason)
		return binary.AppendVarint(b, f.room)
	case frameRoom:
		return binary.AppendVarint(b, f.room)
	}
	return b
}

func decodeFrame(b []byte) (frame, error) {
	var f frame
	d := bincode.Reader{B: b}
	f.kind = d.Byte()
	if d.Err == nil && (f.kind < frameDeliver || f.kind > frameLast) {
		return f, fmt.Errorf("%w: kind %#x", ErrBadFrame, f.kind)
	}
	f.from = string(d.Bytes())
	f.ref = d.Uvarint()
	switch f.kind {
	case frameDeliver:
		f.id = d.Uvarint()
		flags := d.Byte()
		f.qos, f.dup = flags&3, flags&4 != 0
		off := d.Uvarint()
		if d.Err == nil {
			if flags > 7 || f.qos > 2 {
				return f, fmt.Errorf("%w: flags %#x", ErrBadFrame, flags)
			}
			rec, err := streams.DecodeRecord(d.B, off)
			if err != nil {
				return f, fmt.Errorf("%w: %w", ErrBadFrame, err)
			}
			f.rec, d.B = &rec, nil
		}
	case frameCancel:
		f.id = d.Uvarint()
	case frameAck:
		f.id = d.Uvarint()
		f.reason = d.Byte()
		f.room = d.Varint()
	case frameRoom:
		f.room = d.Varint()
	}
	d.End()
	if d.Err != nil {
		return f, fmt.Errorf("%w: %v", ErrBadFrame, d.Err)
	}
	return f, nil
}

// joinRequest is a member node's call to attach a membership.
type joinRequest struct {
	ref          uint64
	name, filter string
	clientID     string
	qos          byte
	receiveMax   uint64
	room         int64
	since        int64 // when the client subscribed (unix ns): a group created by the join starts there
}

func encodeJoin(j joinRequest) []byte {
	b := []byte{1} // version
	b = binary.AppendUvarint(b, j.ref)
	for _, s := range []string{j.name, j.filter, j.clientID} {
		b = bincode.AppendString(b, s)
	}
	b = append(b, j.qos)
	b = binary.AppendUvarint(b, j.receiveMax)
	b = binary.AppendVarint(b, j.room)
	return binary.AppendVarint(b, j.since)
}

func decodeJoin(b []byte) (joinRequest, error) {
	var j joinRequest
	d := bincode.Reader{B: b}
	if v := d.Byte(); d.Err == nil && v != 1 {
		return j, fmt.Errorf("%w: join version %d", ErrBadFrame, v)
	}
	j.ref = d.Uvarint()
	j.name, j.filter, j.clientID = string(d.Bytes()), string(d.Bytes()), string(d.Bytes())
	j.qos = d.Byte()
	j.receiveMax = d.Uvarint()
	j.room = d.Varint()
	j.since = d.Varint()
	if d.Err == nil && (len(d.B) > 0 || j.qos > 2 || j.receiveMax > 65535) {
		d.Err = errors.New("bad field or trailing bytes")
	}
	if d.Err != nil {
		return j, fmt.Errorf("%w: join: %v", ErrBadFrame, d.Err)
	}
	return j, nil
}
