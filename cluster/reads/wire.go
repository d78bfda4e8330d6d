package reads

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/mqstream/mqstream/internal/bincode"
	"github.com/mqstream/mqstream/streams"
)

// Service is the RPC service name of remote reads.
const Service = "reads"

// Operations of a request.
const (
	opList     byte = 1 // the streams of a shard
	opDescribe byte = 2 // one stream
	opRead     byte = 3 // a page of records
	opOffsetAt byte = 4 // the first offset at or after a time
	opWait     byte = 5 // wait until a stream grows past an offset
)

// request is one remote read. A request is: op, shard, stream, then the
// op's numbers (uvarints): read: from, max records, max bytes; offset at:
// unix nanoseconds; wait: next, milliseconds.
type request struct {
	op         byte
	shard      int
	stream     string
	from       uint64 // read: first offset; wait: the next offset known
	maxRecords int
	maxBytes   int
	at         int64         // offset at: unix nanoseconds
	wait       time.Duration // wait: how long at most
}

func encodeRequest(r request) []byte {
	b := []byte{r.op}
	b = binary.AppendUvarint(b, uint64(r.shard))
	b = binary.AppendUvarint(b, uint64(len(r.stream)))
	b = append(b, r.stream...)
	switch r.op {
	case opRead:
		b = binary.AppendUvarint(b, r.from)
		b = binary.AppendUvarint(b, uint64(r.maxRecords))
		b = binary.AppendUvarint(b, uint64(r.maxBytes))
	case opOffsetAt:
		b = binary.AppendVarint(b, r.at)
	case opWait:
		b = binary.AppendUvarint(b, r.from)
		b = binary.AppendUvarint(b, uint64(r.wait/time.Millisecond))
	}
	return b
}

// ErrBadRequest: a request or answer that does not decode.
var ErrBadRequest = errors.New("reads: malformed message")

func decodeRequest(b []byte) (request, error) {
	d := bincode.Reader{B: b}
	r := request{op: d.Byte()}
	shard := d.Uvarint()
	if d.Err == nil && shard > math.MaxInt32 {
		d.Err = fmt.Errorf("shard %d out of range", shard)
	}
	r.shard, r.stream = int(shard), string(d.Bytes())
	switch r.op {
	case opList, opDescribe:
	case opRead:
		r.from, r.maxRecords, r.maxBytes = d.Uvarint(), int(min(d.Uvarint(), maxPageRecords)), int(min(d.Uvarint(), maxPageBytes))
	case opOffsetAt:
		r.at = d.Varint()
	case opWait:
		r.from, r.wait = d.Uvarint(), time.Duration(min(d.Uvarint(), uint64(maxWait/time.Millisecond)))*time.Millisecond
	default:
		if d.Err == nil {
			d.Err = fmt.Errorf("unknown operation %d", r.op)
		}
	}
	if d.Err == nil && len(d.B) != 0 {
		d.Err = fmt.Errorf("%d trailing bytes", len(d.B))
	}
	if d.Err != nil {
		return request{}, fmt.Errorf("%w: %w", ErrBadRequest, d.Err)
	}
	return r, nil
}

// Page bounds and the longest wait a holder grants.
const (
	maxPageRecords = 4096
	maxPageBytes   = 4 << 20
	maxWait        = 10 * time.Second
)

// An answer: a status byte, then for statusOK the op's result: list and
// describe: JSON stream infos; read: count, then each record's offset,
// timestamp (unix nanoseconds) and stored encoding; offset at and wait:
// an offset. statusNotFound and statusFailed carry a message.
const (
	statusOK       byte = 0
	statusNotFound byte = 1 // streams.ErrStreamNotFound
	statusFailed   byte = 2
)

func encodeFailure(err error) []byte {
	st := statusFailed
	if errors.Is(err, streams.ErrStreamNotFound) {
		st = statusNotFound
	}
	return append([]byte{st}, err.Error()...)
}

// decodeStatus returns the answer's body, or the error it carries.
func decodeStatus(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty answer", ErrBadRequest)
	}
	switch b[0] {
	case statusOK:
		return b[1:], nil
	case statusNotFound:
		return nil, fmt.Errorf("%w (%s)", streams.ErrStreamNotFound, b[1:])
	case statusFailed:
		return nil, fmt.Errorf("reads: %s", b[1:])
	}
	return nil, fmt.Errorf("%w: status %d", ErrBadRequest, b[0])
}

func encodeInfos(infos []streams.StreamInfo) ([]byte, error) {
	j, err := json.Marshal(infos)
	if err != nil {
		return nil, err
	}
	return append([]byte{statusOK}, j...), nil
}

func decodeInfos(b []byte) ([]streams.StreamInfo, error) {
	var infos []streams.StreamInfo
	if err := json.Unmarshal(b, &infos); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return infos, nil
}

func encodeRecords(recs []streams.Record) []byte {
	n := 16
	for i := range recs {
		n += len(recs[i].Payload) + len(recs[i].Topic) + 64
	}
	b := make([]byte, 1, n)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	var enc []byte
	for i := range recs {
		ts := recs[i].Timestamp.UnixNano()
		enc = streams.AppendEncoded(enc[:0], &recs[i], ts)
		b = binary.AppendUvarint(b, recs[i].Offset)
		b = binary.AppendUvarint(b, uint64(len(enc)))
		b = append(b, enc...)
	}
	return b
}

func decodeRecords(b []byte) ([]streams.Record, error) {
	d := bincode.Reader{B: b}
	n := d.Uvarint()
	if d.Err == nil && n > maxPageRecords {
		return nil, fmt.Errorf("%w: %d records in a page", ErrBadRequest, n)
	}
	recs := make([]streams.Record, 0, n)
	for i := uint64(0); i < n && d.Err == nil; i++ {
		off := d.Uvarint()
		enc := d.Bytes()
		if d.Err != nil {
			break
		}
		r, err := streams.DecodeRecord(enc, off)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrBadRequest, off, err)
		}
		recs = append(recs, r)
	}
	if d.Err == nil && len(d.B) != 0 {
		d.Err = fmt.Errorf("%d trailing bytes", len(d.B))
	}
	if d.Err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, d.Err)
	}
	return recs, nil
}

func encodeOffset(off uint64) []byte {
	return binary.AppendUvarint([]byte{statusOK}, off)
}

func decodeOffset(b []byte) (uint64, error) {
	d := bincode.Reader{B: b}
	off := d.Uvarint()
	if d.Err == nil && len(d.B) != 0 {
		d.Err = fmt.Errorf("%d trailing bytes", len(d.B))
	}
	if d.Err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadRequest, d.Err)
	}
	return off, nil
}
