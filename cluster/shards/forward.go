package shards

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/mqstream/mqstream/streams"
)

// A forward: version, shard, hops, then a batch of appends as in an
// entry. Its answer: one result per append, each a status byte, then the
// first offset (ok) or the error's message. The status keeps the store's sentinel errors across
// the hop, so a client gets the same reason code as on the leader.

// Forward answer statuses.
const (
	statusOK = iota
	statusUnavailable
	statusTooLarge
	statusNotFound
	statusInvalidName
	statusClosed
	statusOther
	statusNoLeader
	statusExists
	statusRetry // not taken by any leader: the sender may send it again
)

// encodeForward encodes a batch of appends of one shard.
func encodeForward(shard, hops int, cmds []appendCmd) []byte {
	b := []byte{entryVersion1}
	b = binary.AppendUvarint(b, uint64(shard))
	b = append(b, byte(hops))
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = appendCmdTo(b, c)
	}
	return b
}

func decodeForward(b []byte) (shard, hops int, cmds []appendCmd, err error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != entryVersion1 {
		return 0, 0, nil, fmt.Errorf("%w: forward version %d", ErrBadEntry, v)
	}
	shard = d.shard()
	hops = int(d.byte())
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		c := d.appendCmd()
		if (c.kind == kindKV || c.term != 0) && d.err == nil {
			// Proposed only by the leader that wrote them (kv.go).
			d.err = errors.New("key/value writes and fenced appends are never forwarded")
		}
		cmds = append(cmds, c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return 0, 0, nil, fmt.Errorf("%w: %v", ErrBadEntry, d.err)
	}
	return shard, hops, cmds, nil
}

// encodeForwardResults encodes a batch's results, each a length-prefixed
// encodeForwardResult.
func encodeForwardResults(results []appendResult) []byte {
	b := binary.AppendUvarint(nil, uint64(len(results)))
	for _, r := range results {
		b = appendBytes(b, encodeForwardResult(r.first, r.err))
	}
	return b
}

func decodeForwardResults(b []byte, n int) ([]appendResult, error) {
	d := decoder{b: b}
	if got := d.count(); d.err == nil && got != n {
		return nil, fmt.Errorf("%w: %d results for %d appends", ErrBadEntry, got, n)
	}
	out := make([]appendResult, n)
	for i := range out {
		v := d.bytes()
		if d.err != nil {
			return nil, fmt.Errorf("%w: forward results: %v", ErrBadEntry, d.err)
		}
		out[i].first, out[i].err = decodeForwardResult(v)
	}
	return out, nil
}

func encodeForwardResult(first uint64, err error) []byte {
	if err == nil {
		return binary.AppendUvarint([]byte{statusOK}, first)
	}
	status := byte(statusOther)
	switch {
	case errors.Is(err, errNotProposed):
		status = statusRetry
	case errors.Is(err, errOutcomeUnknown):
		// Decoded as errOutcomeUnknown, like an append its stopping
		// leader could not settle.
		status = statusClosed
	case errors.Is(err, ErrNoLeader):
		status = statusNoLeader
	case errors.Is(err, streams.ErrStreamExists):
		status = statusExists
	case errors.Is(err, streams.ErrRecordTooLarge):
		status = statusTooLarge
	case errors.Is(err, streams.ErrStreamNotFound):
		status = statusNotFound
	case errors.Is(err, streams.ErrInvalidName):
		status = statusInvalidName
	case errors.Is(err, streams.ErrClosed):
		status = statusClosed
	case errors.Is(err, streams.ErrUnavailable), errors.Is(err, streams.ErrWrite):
		status = statusUnavailable
	}
	return append([]byte{status}, err.Error()...)
}

func decodeForwardResult(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty forward answer", ErrBadEntry)
	}
	if b[0] == statusOK {
		first, n := binary.Uvarint(b[1:])
		if n <= 0 {
			return 0, fmt.Errorf("%w: forward answer", ErrBadEntry)
		}
		return first, nil
	}
	msg := string(b[1:])
	var sentinel error
	switch b[0] {
	case statusTooLarge:
		sentinel = streams.ErrRecordTooLarge
	case statusNotFound:
		sentinel = streams.ErrStreamNotFound
	case statusInvalidName:
		sentinel = streams.ErrInvalidName
	case statusRetry:
		return 0, fmt.Errorf("%w: %w (from %s)", ErrNoLeader, errNotProposed, msg)
	case statusNoLeader:
		sentinel = ErrNoLeader
	case statusExists:
		sentinel = streams.ErrStreamExists
	case statusClosed:
		// The leader stopped or lost its leadership: the append may
		// have been committed or not; the new leader has it, or takes
		// it again (a retried append is deduplicated by its id).
		return 0, fmt.Errorf("%w: %w (from the shard's leader: %s)", ErrNoLeader, errOutcomeUnknown, msg)
	case statusUnavailable:
		sentinel = streams.ErrUnavailable
	default:
		return 0, fmt.Errorf("shards: forwarded append: %s", msg)
	}
	switch {
	case strings.Contains(msg, fromLeader):
		// Forwarded on by a replica: the leader is named once.
		return 0, leaderError{sentinel: sentinel, msg: msg}
	case strings.HasPrefix(msg, sentinel.Error()):
		// The leader's message says what went wrong already: not twice.
		return 0, leaderError{sentinel: sentinel, msg: msg + " (" + fromLeader + ")"}
	}
	return 0, fmt.Errorf("%w (%s: %s)", sentinel, fromLeader, msg)
}

// fromLeader says that an error's message is the one the shard's leader
// answered.
const fromLeader = "from the shard's leader"

// leaderError is an error a shard's leader answered through another
// replica, whose message names it already.
type leaderError struct {
	sentinel error
	msg      string
}

func (e leaderError) Error() string { return e.msg }
func (e leaderError) Unwrap() error { return e.sentinel }
