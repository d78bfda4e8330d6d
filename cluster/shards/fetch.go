package shards

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// FetchService is the RPC service name of record fetches: a replica
// catching up (catchup.go) asks a peer for a page of a stream's records.
const FetchService = "shards.fetch"

// Page bounds: a peer answers at most this many records and about this
// many bytes per fetch, whatever the request asks.
const (
	maxFetchRecords = 4096
	maxFetchBytes   = 4 << 20
)

// A fetch: version, shard, stream, from and to offsets (to exclusive),
// the most records and bytes wanted (uvarints). Its answer: version, the
// peer's applied index of the shard, then a byte that is 1 if the peer
// has the stream (0 ends the answer), the stream's creation time,
// retention, first and next offsets and newest timestamp, the offset of
// the first record returned, and the records in their stored encoding
// (count, then each length-prefixed). A fetch of the stream "" (no
// stream has that name) answers the applied index alone: whether a
// replica has caught up (reconfigure.go).
const fetchVersion1 = 1

type fetchRequest struct {
	shard                int
	stream               string
	from, to             uint64
	maxRecords, maxBytes int
}

// fetchPage is a peer's answer to a fetch.
type fetchPage struct {
	applied uint64 // the peer's applied index of the shard
	exists  bool   // the peer has the stream; nothing below is set otherwise
	stream  streamState
	first   uint64 // the oldest record the peer keeps
	from    uint64 // offset of records[0]
	records [][]byte
	// gone (not on the wire): no peer has the records, deleted since
	// the snapshot (catchUpRun.fetch).
	gone bool
}

func encodeFetchRequest(r fetchRequest) []byte {
	b := []byte{fetchVersion1}
	b = binary.AppendUvarint(b, uint64(r.shard))
	b = appendBytes(b, []byte(r.stream))
	b = binary.AppendUvarint(b, r.from)
	b = binary.AppendUvarint(b, r.to)
	b = binary.AppendUvarint(b, uint64(r.maxRecords))
	return binary.AppendUvarint(b, uint64(r.maxBytes))
}

func decodeFetchRequest(b []byte) (fetchRequest, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != fetchVersion1 {
		return fetchRequest{}, fmt.Errorf("%w: fetch version %d", ErrBadEntry, v)
	}
	r := fetchRequest{shard: d.shard(), stream: string(d.bytes()), from: d.uvarint(), to: d.uvarint()}
	r.maxRecords, r.maxBytes = int(min(d.uvarint(), maxFetchRecords)), int(min(d.uvarint(), maxFetchBytes))
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return fetchRequest{}, fmt.Errorf("%w: fetch: %v", ErrBadEntry, d.err)
	}
	return r, nil
}

func encodeFetchPage(p fetchPage) []byte {
	n := 64 + len(p.stream.name)
	for _, r := range p.records {
		n += len(r) + binary.MaxVarintLen32
	}
	b := make([]byte, 0, n)
	b = append(b, fetchVersion1)
	b = binary.AppendUvarint(b, p.applied)
	if !p.exists {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, p.stream.created)
	b = binary.AppendVarint(b, int64(p.stream.retention.MaxAge))
	b = binary.AppendVarint(b, p.stream.retention.MaxBytes)
	b = binary.AppendVarint(b, p.stream.retention.MaxRecords)
	b = binary.AppendUvarint(b, p.first)
	b = binary.AppendUvarint(b, p.stream.next)
	b = binary.AppendVarint(b, p.stream.lastTS)
	b = binary.AppendUvarint(b, p.from)
	b = binary.AppendUvarint(b, uint64(len(p.records)))
	for _, r := range p.records {
		b = appendBytes(b, r)
	}
	return b
}

// decodeFetchPage decodes a peer's answer to req; the records alias b.
// An answer that does not fit the request (records outside it, more than
// asked for, a stream position that contradicts them) is malformed.
func decodeFetchPage(b []byte, req fetchRequest) (fetchPage, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != fetchVersion1 {
		return fetchPage{}, fmt.Errorf("%w: fetch answer version %d", ErrBadEntry, v)
	}
	p := fetchPage{applied: d.uvarint()}
	p.exists = d.byte() == 1
	if p.exists {
		p.stream = streamState{name: req.stream, created: d.varint()}
		p.stream.retention = streams.Retention{MaxAge: time.Duration(d.varint()), MaxBytes: d.varint(), MaxRecords: d.varint()}
		p.first, p.stream.next, p.stream.lastTS = d.uvarint(), d.uvarint(), d.varint()
		p.from = d.uvarint()
		n := d.count()
		p.records = make([][]byte, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			p.records = append(p.records, d.bytes())
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err == nil && p.exists {
		end := p.from + uint64(len(p.records))
		switch {
		case p.from < req.from || p.from < p.first:
			d.err = fmt.Errorf("records from %d, asked from %d, the peer keeps from %d", p.from, req.from, p.first)
		case len(p.records) > 0 && (end > req.to || end > p.stream.next):
			d.err = fmt.Errorf("records up to %d, asked up to %d, the stream's next offset %d", end, req.to, p.stream.next)
		case len(p.records) > max(req.maxRecords, 1):
			d.err = fmt.Errorf("%d records, asked for %d", len(p.records), req.maxRecords)
		}
	}
	if d.err != nil {
		return fetchPage{}, fmt.Errorf("%w: fetch answer: %v", ErrBadEntry, d.err)
	}
	return p, nil
}

// ServeFetch answers a fetch (the FetchService handler) from store: a
// page of a stream's records in their stored encoding, with the stream's
// position and the shard's applied index. It needs no Raft group, so a
// node serves its peers' catch-up while its own shards start.
func ServeFetch(_ context.Context, store Store, req []byte) ([]byte, error) {
	r, err := decodeFetchRequest(req)
	if err != nil {
		return nil, err
	}
	group := groupName(r.shard)
	// A shard being cleared here has streams deleted outside its log,
	// which would read as deleted by the log: no answer from it.
	if clearing, err := store.AppliedIndexOf(group + clearingSuffix); err != nil {
		return nil, fmt.Errorf("shards: fetch: %w", err)
	} else if clearing != 0 {
		return nil, fmt.Errorf("%w: shard %d is being cleared from this node", streams.ErrUnavailable, r.shard)
	}
	// The applied index first: the stream read after it is at least as new.
	applied, err := store.AppliedIndexOf(group)
	if err != nil {
		return nil, fmt.Errorf("shards: fetch: %w", err)
	}
	page, err := store.ReadStored(r.stream, r.from, r.to, r.maxRecords, r.maxBytes)
	if err != nil && !errors.Is(err, streams.ErrStreamNotFound) {
		return nil, fmt.Errorf("shards: fetch %s: %w", r.stream, err)
	}
	// A clearing begun (or done) since the checks above may have deleted
	// the stream outside the log: "no stream" would then be believed.
	if clearing, err := store.AppliedIndexOf(group + clearingSuffix); err != nil {
		return nil, fmt.Errorf("shards: fetch: %w", err)
	} else if now, err := store.AppliedIndexOf(group); err != nil {
		return nil, fmt.Errorf("shards: fetch: %w", err)
	} else if clearing != 0 || now < applied {
		return nil, fmt.Errorf("%w: shard %d is being cleared from this node", streams.ErrUnavailable, r.shard)
	}
	if errors.Is(err, streams.ErrStreamNotFound) {
		return encodeFetchPage(fetchPage{applied: applied}), nil
	}
	return encodeFetchPage(fetchPage{applied: applied, exists: true, stream: streamStateOf(page.Stream),
		first: page.Stream.FirstOffset, from: page.From, records: page.Records}), nil
}
