package appends

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/raftwire"
	"github.com/mqstream/mqstream/internal/bincode"
)

// wireVersion is the first byte of every frame body.
const wireVersion byte = 1

// maxFrame bounds a frame's body: a frame holds requests past
// Options.MaxFrame only when its first is larger, and a request is at
// most maxRequestBytes (split.go), or one entry, which cluster/shards
// bounds at 32 MiB.
const maxFrame = 128 << 20

// maxItems bounds the requests or answers of one frame.
const maxItems = 1 << 20

// maxEntries bounds the entries of one request (raft sends at most
// MaxAppendEntries, 64 by default; a group may raise it).
const maxEntries = 1 << 16

// errMalformed wraps every decoding failure.
var errMalformed = errors.New("appends: malformed frame")

// request is one group's AppendEntries in a frame, with the id its answer
// will carry.
type request struct {
	id    uint64
	group string
	req   raft.AppendEntriesRequest
}

// answer is the reply to the request with the same id: the group's
// response, or why there is none.
type answer struct {
	id   uint64
	resp raft.AppendEntriesResponse
	err  string // "" = resp holds the group's response
}

// Answer status bytes.
const (
	answerOK    byte = 0
	answerError byte = 1
)

// beginFrame starts a frame at the end of b: room for the body's length
// (uint32, big endian), which endFrame fills in once the body follows.
// It returns b and where the frame starts.
func beginFrame(b []byte) ([]byte, int) {
	at := len(b)
	return append(b, 0, 0, 0, 0), at
}

// endFrame writes the length of the frame begun at at.
func endFrame(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// errIdle: the read deadline passed before a frame began; reading again
// is safe.
var errIdle = errors.New("appends: no frame before the deadline")

// readFrame reads one frame's body into a buffer of its own (decoded
// entries alias it).
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, errIdle
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("%w: frame of %d bytes, at most %d", errMalformed, n, maxFrame)
	}
	// Read as it comes: a length alone pins no 128 MiB.
	return bincode.ReadBody(r, int(n))
}

// appendRequests encodes requests as one frame body: version, count, and
// per request its id, group and the AppendEntries fields (appendRequest).
func appendRequests(b []byte, reqs []*call) []byte {
	b = append(b, wireVersion)
	b = binary.AppendUvarint(b, uint64(len(reqs)))
	for _, c := range reqs {
		b = binary.AppendUvarint(b, c.id)
		b = bincode.AppendString(b, c.group)
		b = appendRequest(b, c.req)
	}
	return b
}

// appendRequest encodes an AppendEntries request: protocol version,
// server id, address, term, (deprecated) leader, previous log index and
// term, commit index, then the entries, each with its index, term, type,
// data, extensions and append time (Unix nanoseconds, 0 for none).
func appendRequest(b []byte, r *raft.AppendEntriesRequest) []byte {
	b = raftwire.AppendHeader(b, &r.RPCHeader)
	b = binary.AppendUvarint(b, r.Term)
	b = bincode.AppendBytes(b, r.Leader)
	b = binary.AppendUvarint(b, r.PrevLogEntry)
	b = binary.AppendUvarint(b, r.PrevLogTerm)
	b = binary.AppendUvarint(b, r.LeaderCommitIndex)
	b = binary.AppendUvarint(b, uint64(len(r.Entries)))
	for _, e := range r.Entries {
		b = binary.AppendUvarint(b, e.Index)
		b = binary.AppendUvarint(b, e.Term)
		b = append(b, byte(e.Type))
		b = bincode.AppendBytes(b, e.Data)
		b = bincode.AppendBytes(b, e.Extensions)
		var at int64
		if !e.AppendedAt.IsZero() {
			at = e.AppendedAt.UnixNano()
		}
		b = binary.AppendVarint(b, at)
	}
	return b
}

// decodeRequests decodes appendRequests's encoding. The entries' bytes
// are copied, into one buffer per request; the requests' other byte
// fields alias b.
func decodeRequests(b []byte) ([]request, error) {
	d := reader{bincode.Reader{B: b}}
	n := d.header()
	reqs := make([]request, 0, min(n, 64))
	for i := 0; i < n && d.Err == nil; i++ {
		var q request
		q.id = d.Uvarint()
		q.group = string(d.Bytes())
		d.request(&q.req)
		reqs = append(reqs, q)
	}
	return reqs, d.end()
}

// request reads appendRequest's encoding into r.
func (d *reader) request(r *raft.AppendEntriesRequest) {
	raftwire.ReadHeader(&d.Reader, &r.RPCHeader, false)
	r.Term = d.Uvarint()
	r.Leader = d.bytes()
	r.PrevLogEntry = d.Uvarint()
	r.PrevLogTerm = d.Uvarint()
	r.LeaderCommitIndex = d.Uvarint()
	n := d.Uvarint()
	if d.Err != nil {
		return
	}
	// Each entry takes at least 6 bytes: a count past what is left is
	// malformed, and is refused before anything is allocated for it.
	if n > maxEntries || n > uint64(len(d.B)/6) {
		d.Err = fmt.Errorf("%d entries in %d bytes", n, len(d.B))
		return
	}
	if n == 0 {
		return
	}
	logs := make([]raft.Log, n)
	r.Entries = make([]*raft.Log, n)
	for i := range logs {
		e := &logs[i]
		e.Index = d.Uvarint()
		e.Term = d.Uvarint()
		e.Type = raft.LogType(d.Byte())
		e.Data = d.bytes()
		e.Extensions = d.bytes()
		if at := d.Varint(); at != 0 {
			e.AppendedAt = time.Unix(0, at)
		}
		r.Entries[i] = e
	}
	ownEntries(logs)
}

// ownEntries copies the entries' bytes, which alias the frame, into one
// buffer of their own. raft keeps a group's newest entries in its log
// cache: aliasing the frame, each would keep the whole frame, up to
// maxFrame of every group's requests to this node, in memory for as long
// as its group's cache holds it (a quiet group's, until it writes again).
func ownEntries(logs []raft.Log) {
	size := 0
	for i := range logs {
		size += len(logs[i].Data) + len(logs[i].Extensions)
	}
	if size == 0 {
		return
	}
	own := make([]byte, 0, size)
	keep := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		at := len(own)
		own = append(own, b...)
		return own[at:len(own):len(own)]
	}
	for i := range logs {
		logs[i].Data = keep(logs[i].Data)
		logs[i].Extensions = keep(logs[i].Extensions)
	}
}

// appendAnswers encodes answers as one frame body: version, count, then
// per answer its id, a status byte and either the response (protocol
// version, server id, address, term, last log index, flags) or the error
// message.
func appendAnswers(b []byte, answers []answer) []byte {
	b = append(b, wireVersion)
	b = binary.AppendUvarint(b, uint64(len(answers)))
	for i := range answers {
		a := &answers[i]
		b = binary.AppendUvarint(b, a.id)
		if a.err != "" {
			b = append(b, answerError)
			b = bincode.AppendString(b, a.err)
			continue
		}
		b = append(b, answerOK)
		b = raftwire.AppendResponse(b, &a.resp)
	}
	return b
}

// decodeAnswers decodes appendAnswers's encoding. The responses' byte
// fields alias b.
func decodeAnswers(b []byte) ([]answer, error) {
	d := reader{bincode.Reader{B: b}}
	n := d.header()
	answers := make([]answer, 0, min(n, 64))
	for i := 0; i < n && d.Err == nil; i++ {
		var a answer
		a.id = d.Uvarint()
		switch d.Byte() {
		case answerError:
			a.err = string(d.Bytes())
			if a.err == "" {
				a.err = "no reason given"
			}
		case answerOK:
			raftwire.ReadResponse(&d.Reader, &a.resp, false)
		default:
			if d.Err == nil {
				d.Err = errors.New("bad answer status")
			}
		}
		answers = append(answers, a)
	}
	return answers, d.end()
}

// reader reads the encodings above (bincode; the first failure sticks).
type reader struct{ bincode.Reader }

// header reads the version and the count.
func (d *reader) header() int {
	if v := d.Byte(); d.Err == nil && v != wireVersion {
		d.Err = fmt.Errorf("version %d, want %d", v, wireVersion)
		return 0
	}
	n := d.Uvarint()
	if d.Err == nil && n > maxItems {
		d.Err = fmt.Errorf("%d items, at most %d", n, maxItems)
		return 0
	}
	return int(n)
}

// bytes returns the next length-prefixed bytes, nil when empty (as
// msgpack decodes them), aliasing the frame.
func (d *reader) bytes() []byte { return raftwire.Field(&d.Reader, false) }

// end reports the first failure, or trailing bytes, as errMalformed.
func (d *reader) end() error {
	d.End()
	if d.Err != nil {
		return fmt.Errorf("%w: %w", errMalformed, d.Err)
	}
	return nil
}
