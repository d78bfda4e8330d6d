package rpcmux

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/mqstream/mqstream/internal/bincode"
)

// The connection header; see the package doc.
const (
	magic          = "MQSX"
	version   byte = 1
	maxName        = 255
	maxNodeID      = 255
)

// kind says what a connection is for.
type kind byte

const (
	kindStream kind = 1 // a raft.StreamLayer channel
	kindCall   kind = 2 // request/response calls to a service
)

func (k kind) String() string {
	switch k {
	case kindStream:
		return "stream"
	case kindCall:
		return "call"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// MaxFrame is the largest request or response a call carries.
const MaxFrame = 64 << 20

// Response status bytes.
const (
	statusOK    byte = 0
	statusError byte = 1
)

// header is what a connection announces in its first bytes.
type header struct {
	kind   kind
	name   string // channel or service
	nodeID string // the dialer's node id
}

// appendHeader appends h's wire form to b.
func appendHeader(b []byte, h header) ([]byte, error) {
	if len(h.name) == 0 || len(h.name) > maxName {
		return b, fmt.Errorf("rpcmux: %s name %q: length must be 1..%d", h.kind, h.name, maxName)
	}
	if len(h.nodeID) > maxNodeID {
		return b, fmt.Errorf("rpcmux: node id %q: longer than %d", h.nodeID, maxNodeID)
	}
	b = append(b, magic...)
	b = append(b, version, byte(h.kind), byte(len(h.name)))
	b = append(b, h.name...)
	b = append(b, byte(len(h.nodeID)))
	return append(b, h.nodeID...), nil
}

// errBadHeader is wrapped by every header that is not ours.
var errBadHeader = errors.New("bad header")

// readHeader reads and checks a header.
func readHeader(r io.Reader) (header, error) {
	var fixed [7]byte // magic, version, kind, name length
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return header{}, err
	}
	if string(fixed[:4]) != magic {
		return header{}, fmt.Errorf("%w: magic %q", errBadHeader, fixed[:4])
	}
	if fixed[4] != version {
		return header{}, fmt.Errorf("%w: version %d, want %d", errBadHeader, fixed[4], version)
	}
	h := header{kind: kind(fixed[5])}
	if h.kind != kindStream && h.kind != kindCall {
		return header{}, fmt.Errorf("%w: %s", errBadHeader, h.kind)
	}
	if fixed[6] == 0 {
		return header{}, fmt.Errorf("%w: empty %s name", errBadHeader, h.kind)
	}
	name, err := readShort(r, int(fixed[6]))
	if err != nil {
		return header{}, err
	}
	var idLen [1]byte
	if _, err := io.ReadFull(r, idLen[:]); err != nil {
		return header{}, err
	}
	id, err := readShort(r, int(idLen[0]))
	if err != nil {
		return header{}, err
	}
	h.name, h.nodeID = name, id
	return h, nil
}

func readShort(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// appendRequest appends a request frame carrying req to b.
func appendRequest(b, req []byte) ([]byte, error) {
	if len(req) > MaxFrame {
		return b, fmt.Errorf("rpcmux: request of %d bytes: %w", len(req), ErrTooLarge)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(req)))
	return append(b, req...), nil
}

// appendResponse appends a response frame to b: status and payload (the
// response, or an error message).
func appendResponse(b []byte, status byte, payload []byte) []byte {
	b = append(b, status)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// readResponse reads a response frame.
func readResponse(r *bufio.Reader) (status byte, payload []byte, err error) {
	status, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	if status != statusOK && status != statusError {
		return 0, nil, fmt.Errorf("rpcmux: response status %d", status)
	}
	payload, err = readFrame(r)
	return status, payload, err
}

// readFrame reads a uint32 length and that many bytes (a request, or the
// rest of a response), refusing lengths over MaxFrame before allocating.
// A frame over frameStep is read into a buffer that grows with what
// arrives: a peer announcing 64 MiB and sending nothing more holds no
// more memory than it sent.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := int(binary.BigEndian.Uint32(n[:]))
	if size > MaxFrame {
		return nil, fmt.Errorf("rpcmux: frame of %d bytes: %w", size, ErrTooLarge)
	}
	return bincode.ReadBody(r, size)
}

// frameStep is how much of a frame is allocated before any of it came.
const frameStep = bincode.BodyStep
