package heartbeat

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/raftwire"
	"github.com/mqstream/mqstream/internal/bincode"
)

// wireVersion is the first byte of every batch and every answer.
const wireVersion byte = 1

// maxItems bounds the heartbeats of one batch: one per Raft group the
// calling node leads with the called node as a follower.
const maxItems = 1 << 16

// errMalformed wraps every decoding failure.
var errMalformed = errors.New("heartbeat: malformed batch")

// item is one group's heartbeat in a batch.
type item struct {
	group string
	req   raft.AppendEntriesRequest
}

// answer is one group's reply in a batch: its response, or why there is
// none.
type answer struct {
	resp raft.AppendEntriesResponse
	err  string // "" = resp holds the group's answer
}

// Answer status bytes.
const (
	answerOK    byte = 0
	answerError byte = 1
)

// appendBatch encodes heartbeats: version, count, then per item its
// group, the request's protocol version, server id, address, (deprecated)
// leader and term. A heartbeat carries nothing else (isHeartbeat).
func appendBatch(b []byte, items []item) []byte {
	b = append(b, wireVersion)
	b = binary.AppendUvarint(b, uint64(len(items)))
	for _, it := range items {
		b = bincode.AppendString(b, it.group)
		b = raftwire.AppendHeader(b, &it.req.RPCHeader)
		b = bincode.AppendBytes(b, it.req.Leader)
		b = binary.AppendUvarint(b, it.req.Term)
	}
	return b
}

// decodeBatch decodes appendBatch's encoding.
func decodeBatch(b []byte) ([]item, error) {
	d := reader{bincode.Reader{B: b}}
	n := d.header()
	items := make([]item, 0, min(n, 64))
	for i := 0; i < n && d.Err == nil; i++ {
		var it item
		it.group = string(d.bytes())
		raftwire.ReadHeader(&d.Reader, &it.req.RPCHeader, true)
		it.req.Leader = d.bytes()
		it.req.Term = d.Uvarint()
		items = append(items, it)
	}
	return items, d.end()
}

// appendAnswers encodes answers, in the order of the batch's items:
// version, count, then per answer a status byte and either the response
// (protocol version, server id, address, term, last log index, flags) or
// the error message.
func appendAnswers(b []byte, answers []answer) []byte {
	b = append(b, wireVersion)
	b = binary.AppendUvarint(b, uint64(len(answers)))
	for _, a := range answers {
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

// decodeAnswers decodes appendAnswers's encoding.
func decodeAnswers(b []byte) ([]answer, error) {
	d := reader{bincode.Reader{B: b}}
	n := d.header()
	answers := make([]answer, 0, min(n, 64))
	for i := 0; i < n && d.Err == nil; i++ {
		var a answer
		switch d.Byte() {
		case answerError:
			a.err = string(d.bytes())
			if a.err == "" {
				a.err = "no reason given"
			}
		case answerOK:
			raftwire.ReadResponse(&d.Reader, &a.resp, true)
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
		d.Err = fmt.Errorf("%d heartbeats, at most %d", n, maxItems)
		return 0
	}
	return int(n)
}

// bytes returns the next length-prefixed bytes (nil when empty), copied
// out of the frame.
func (d *reader) bytes() []byte { return raftwire.Field(&d.Reader, true) }

// end reports the first failure, or trailing bytes, as errMalformed.
func (d *reader) end() error {
	d.End()
	if d.Err != nil {
		return fmt.Errorf("%w: %w", errMalformed, d.Err)
	}
	return nil
}
