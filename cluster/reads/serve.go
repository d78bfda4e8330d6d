package reads

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Store is the local stream store as the reads need it; *streams.Store
// implements it.
type Store interface {
	ListStreams() []streams.StreamInfo
	DescribeStream(name string) (streams.StreamInfo, error)
	Read(name string, from uint64, opts streams.ReadOptions) ([]streams.Record, error)
	Scan(ctx context.Context, name string, from, to uint64, fn func(streams.Record) (bool, error)) error
	Notify(name string) (ch <-chan struct{}, next uint64, err error)
	OffsetAt(name string, t time.Time) (uint64, error)
	StreamsChanged() <-chan struct{}
}

// ErrNotServing: the node asked does not serve reads of the shard (it
// does not hold it, or its replica has not caught up with its group); the
// reader asks the shard's next holder.
var ErrNotServing = errors.New("reads: this node does not serve reads of the shard")

// Serve answers a remote read from store (the Service handler). shardOf
// gives a stream's shard, and serves whether this node serves reads of a
// shard (nil: of all): a read of a shard it does not serve is refused
// (ErrNotServing), not answered from what the store holds of it, which
// may be nothing yet or a state the shard has left.
func Serve(ctx context.Context, store Store, shardOf func(string) int, serves func(shard int) bool, b []byte) ([]byte, error) {
	req, err := decodeRequest(b)
	if err != nil {
		return nil, err
	}
	shard := req.shard
	if req.op != opList {
		shard = shardOf(req.stream)
	}
	if serves != nil && !serves(shard) {
		return nil, fmt.Errorf("%w: shard %d", ErrNotServing, shard)
	}
	switch req.op {
	case opList:
		var infos []streams.StreamInfo
		for _, info := range store.ListStreams() {
			if shardOf(info.Name) == req.shard {
				infos = append(infos, info)
			}
		}
		return encodeInfos(infos)
	case opDescribe:
		info, err := store.DescribeStream(req.stream)
		if err != nil {
			return encodeFailure(err), nil
		}
		return encodeInfos([]streams.StreamInfo{info})
	case opRead:
		recs, err := store.Read(req.stream, req.from, streams.ReadOptions{MaxRecords: max(req.maxRecords, 1), MaxBytes: max(req.maxBytes, 1)})
		if err != nil {
			return encodeFailure(err), nil
		}
		return encodeRecords(recs), nil
	case opOffsetAt:
		off, err := store.OffsetAt(req.stream, time.Unix(0, req.at))
		if err != nil {
			return encodeFailure(err), nil
		}
		return encodeOffset(off), nil
	case opWait:
		return wait(ctx, store, req), nil
	}
	return nil, fmt.Errorf("%w: operation %d", ErrBadRequest, req.op)
}

// wait answers once the stream's next offset passes req.from, or after
// req.wait, with the next offset then.
func wait(ctx context.Context, store Store, req request) []byte {
	timer := time.NewTimer(req.wait)
	defer timer.Stop()
	for {
		ch, next, err := store.Notify(req.stream)
		if err != nil {
			return encodeFailure(err)
		}
		if next > req.from {
			return encodeOffset(next)
		}
		select {
		case <-ch:
		case <-timer.C:
			return encodeOffset(next)
		case <-ctx.Done():
			return encodeOffset(next)
		}
	}
}
