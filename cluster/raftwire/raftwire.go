// Package raftwire encodes the Raft messages the node's batched transports
// carry in their own frames (cluster/heartbeat, cluster/appends) instead
// of hashicorp/raft's msgpack: one encoding of an AppendEntries response,
// so both packages answer alike.
package raftwire

import (
	"encoding/binary"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/bincode"
)

// Response flag bits.
const (
	flagSuccess        byte = 1 << 0
	flagNoRetryBackoff byte = 1 << 1
)

// AppendHeader appends the header every Raft RPC carries: protocol
// version, server id and address.
func AppendHeader(b []byte, h *raft.RPCHeader) []byte {
	b = binary.AppendUvarint(b, uint64(h.ProtocolVersion))
	b = bincode.AppendBytes(b, h.ID)
	return bincode.AppendBytes(b, h.Addr)
}

// ReadHeader reads AppendHeader's encoding into h (byte fields as Field
// returns them).
func ReadHeader(d *bincode.Reader, h *raft.RPCHeader, own bool) {
	h.ProtocolVersion = raft.ProtocolVersion(d.Uvarint())
	h.ID = Field(d, own)
	h.Addr = Field(d, own)
}

// AppendResponse appends r: its header (AppendHeader), term, last log
// index and a flags byte (success, no retry backoff).
func AppendResponse(b []byte, r *raft.AppendEntriesResponse) []byte {
	b = AppendHeader(b, &r.RPCHeader)
	b = binary.AppendUvarint(b, r.Term)
	b = binary.AppendUvarint(b, r.LastLog)
	var flags byte
	if r.Success {
		flags |= flagSuccess
	}
	if r.NoRetryBackoff {
		flags |= flagNoRetryBackoff
	}
	return append(b, flags)
}

// ReadResponse reads AppendResponse's encoding into r (d's first failure
// sticks). The byte fields are nil when empty, as msgpack decodes them;
// with own they are copied out of the frame, else they alias it.
func ReadResponse(d *bincode.Reader, r *raft.AppendEntriesResponse, own bool) {
	ReadHeader(d, &r.RPCHeader, own)
	r.Term = d.Uvarint()
	r.LastLog = d.Uvarint()
	flags := d.Byte()
	r.Success = flags&flagSuccess != 0
	r.NoRetryBackoff = flags&flagNoRetryBackoff != 0
}

// Field reads a byte field: nil when empty, as msgpack decodes it; with
// own a copy, else an alias of the frame (capacity capped, so that an
// append to it cannot write into the frame).
func Field(d *bincode.Reader, own bool) []byte {
	b := d.Bytes()
	switch {
	case len(b) == 0:
		return nil
	case own:
		return append([]byte(nil), b...)
	}
	return b[:len(b):len(b)]
}
