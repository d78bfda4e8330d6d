package routes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Services the router serves on the cluster's RPC mux.
const (
	// SyncService takes route updates: a node's filters, whole or as the
	// changes since a version the receiver holds.
	SyncService = "routes.sync"
	// DeliverService takes a batch of messages for the receiver's
	// subscribers, in the order they were published on the sender.
	DeliverService = "routes.deliver"
	// ClaimService takes another node's claim of an MQTT client id that
	// connected there.
	ClaimService = "sessions.claim"
	// FlushService returns once what the callee queued for the caller
	// has been delivered.
	FlushService = "routes.flush"
	// SettleService ends the move of a session handed over in the answer
	// to a claim: the claiming node has installed it.
	SettleService = "sessions.settle"
	// HandOverService takes a persistent MQTT session a stopping node
	// hands over.
	HandOverService = "sessions.handover"
)

// ErrBadFrame: a request that does not decode.
var ErrBadFrame = errors.New("routes: malformed frame")

const wireVersion1 = 1

// maxPrealloc bounds what a count read from a frame preallocates, and
// maxBatchMessages and maxFilters how many items a frame may hold: a frame
// of empty items must not make a node allocate gigabytes (a sender's
// batch holds at most maxBatchBytes, so far fewer messages).
const (
	maxPrealloc      = 4096
	maxBatchMessages = 1 << 17
	maxFilters       = 1 << 21
)

// syncKind says whether an update holds all of a node's filters.
const (
	syncDelta byte = 0
	syncFull  byte = 1
)

// A full update's base, which a full update does not otherwise use
// (earlier versions send 0), carries the sender's number for its link to
// the receiver (peer.link): a new number from the same process means the
// sender dropped the receiver and took it back.
//
// A full update's removes, which a full update does not otherwise use
// (earlier versions ignore them), may hold one marker: the receiver's
// incarnation and link number whose filters the sender held when it last
// dropped the receiver (peer.heard). No filter starts with a NUL byte.
const heardPrefix = "\x00heard:"

// heardLink names a link of a node's process: its incarnation and its
// number for the link (remoteRoutes.link).
type heardLink struct{ incarnation, link uint64 }

func (h heardLink) marker() string {
	return heardPrefix + strconv.FormatUint(h.incarnation, 16) + ":" + strconv.FormatUint(h.link, 16)
}

// heardIn returns the link a full update's removes name (zero: none).
func heardIn(removes []string) heardLink {
	for _, f := range removes {
		rest, ok := strings.CutPrefix(f, heardPrefix)
		if !ok {
			continue
		}
		inc, link, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		i, err1 := strconv.ParseUint(inc, 16, 64)
		l, err2 := strconv.ParseUint(link, 16, 64)
		if err1 == nil && err2 == nil {
			return heardLink{incarnation: i, link: l}
		}
	}
	return heardLink{}
}

// deliverRefused is the answer to a deliver call whose batch does not
// decode (an empty answer: delivered). Sent again, it would fail again.
const deliverRefused byte = 1

// Answers to a sync request.
const (
	syncOK       byte = 0
	syncNeedFull byte = 1 // the receiver does not hold the base version
	// syncNotPeer: the receiver does not count the sender among its peers
	// yet (its membership has not seen it come up): it could not forward
	// to it, so it does not take its filters; the sender tries again.
	syncNotPeer byte = 2
)

// update is one sync request: the sender's filters at version, either all
// of them (full) or the changes from base (which the receiver must hold).
type update struct {
	kind        byte
	incarnation uint64 // a random id of the sender's process
	base        uint64 // delta: the version the changes apply to
	version     uint64
	adds        []string // full: every filter
	removes     []string
}

func encodeUpdate(u update) []byte {
	n := 32
	for _, f := range u.adds {
		n += len(f) + 2
	}
	for _, f := range u.removes {
		n += len(f) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, wireVersion1, u.kind)
	b = binary.AppendUvarint(b, u.incarnation)
	b = binary.AppendUvarint(b, u.base)
	b = binary.AppendUvarint(b, u.version)
	b = appendStrings(b, u.adds)
	return appendStrings(b, u.removes)
}

func decodeUpdate(b []byte) (update, error) {
	if len(b) < 2 || b[0] != wireVersion1 || b[1] > syncFull {
		return update{}, fmt.Errorf("%w: update header", ErrBadFrame)
	}
	d := reader{b: b[2:]}
	u := update{kind: b[1], incarnation: d.uvarint(), base: d.uvarint(), version: d.uvarint()}
	u.adds = d.strings()
	u.removes = d.strings()
	if d.err != nil || len(d.b) != 0 {
		return update{}, fmt.Errorf("%w: update body", ErrBadFrame)
	}
	return u, nil
}

// encodeBatch frames messages for DeliverService.
func encodeBatch(msgs [][]byte) []byte {
	n := 8
	for _, m := range msgs {
		n += len(m) + binary.MaxVarintLen32
	}
	b := make([]byte, 0, n)
	b = append(b, wireVersion1)
	b = binary.AppendUvarint(b, uint64(len(msgs)))
	for _, m := range msgs {
		b = binary.AppendUvarint(b, uint64(len(m)))
		b = append(b, m...)
	}
	return b
}

// decodeBatch returns the messages of a batch; they alias b.
func decodeBatch(b []byte) ([][]byte, error) {
	if len(b) < 1 || b[0] != wireVersion1 {
		return nil, fmt.Errorf("%w: batch header", ErrBadFrame)
	}
	d := reader{b: b[1:]}
	n := d.count()
	if n > maxBatchMessages {
		return nil, fmt.Errorf("%w: %d messages in a batch", ErrBadFrame, n)
	}
	msgs := make([][]byte, 0, min(n, maxPrealloc))
	for i := 0; i < n && d.err == nil; i++ {
		msgs = append(msgs, d.bytes())
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: batch body", ErrBadFrame)
	}
	return msgs, nil
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// reader decodes uvarints and length-prefixed bytes; the first error
// sticks.
type reader struct {
	b   []byte
	err error
}

func (d *reader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = ErrBadFrame
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items, each at least one byte long.
func (d *reader) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = ErrBadFrame
		return 0
	}
	return int(n)
}

func (d *reader) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = ErrBadFrame
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *reader) strings() []string {
	n := d.count()
	if n > maxFilters {
		d.err = ErrBadFrame
		return nil
	}
	out := make([]string, 0, min(n, maxPrealloc))
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, string(d.bytes()))
	}
	return out
}
