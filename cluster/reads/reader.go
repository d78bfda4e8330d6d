package reads

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Caller carries a request to another node (the cluster's RPC mux).
type Caller interface {
	Call(ctx context.Context, addr, service string, req []byte) ([]byte, error)
}

// Placement says where the shards are, as this node knows it.
type Placement interface {
	// Shards is the cluster's shard count (0 before the cluster formed:
	// everything is read locally then).
	Shards() int
	// ShardOf returns a stream's shard.
	ShardOf(stream string) int
	// Holders reports whether this node holds shard i and, when not, the
	// RPC addresses of the nodes that do, the leader first if known.
	Holders(i int) (local bool, addrs []string)
}

// Reader reads every stream of the cluster; it implements the read side
// of the store the API, SQL and consumer groups use.
type Reader struct {
	local Store
	place Placement
	call  Caller
	log   *slog.Logger
	// timeout bounds one remote read.
	timeout time.Duration

	mu struct {
		sync.Mutex // guards listed and polls
		// listed holds, per shard not held here when it was listed, its
		// streams as a holder listed them (kept for listFor).
		listed map[int]shardListing
		// polls holds, per stream held elsewhere, the channel of the long
		// poll under way for it (Notify): one at a time per stream.
		polls map[string]chan struct{}
	}
}

// shardListing is a holder's listing of one shard's streams.
type shardListing struct {
	at    time.Time
	infos []streams.StreamInfo
}

// listFor is how long a listing of the other nodes' streams is kept.
const listFor = 500 * time.Millisecond

// hedgeAfter is how long a read waits for a holder's answer before it
// asks the next holder too (the first answer wins): a holder that hangs
// (stopped, partitioned, before membership says so) then costs that
// long, not the whole timeout.
const hedgeAfter = 500 * time.Millisecond

// New returns a reader over the local store and the nodes place names.
func New(local Store, place Placement, call Caller, log *slog.Logger) *Reader {
	if log == nil {
		log = slog.Default()
	}
	return &Reader{local: local, place: place, call: call, log: log, timeout: 5 * time.Second}
}

// where returns the holders of stream's shard, nil when it is read here.
func (r *Reader) where(stream string) []string {
	if r.place.Shards() == 0 {
		return nil
	}
	local, addrs := r.place.Holders(r.place.ShardOf(stream))
	if local {
		return nil
	}
	return addrs
}

// ErrNoHolder: no node holding a stream's shard answered.
var ErrNoHolder = fmt.Errorf("%w: no replica of the stream's shard answered", streams.ErrUnavailable)

// ask sends req to the holders and returns the first answer's body (or
// the error it carries: a holder's "not found" is an answer, believed
// once the calls under way when it came have answered too). It asks them
// in turn, the next one as soon as a call fails or, unless req is a long
// poll (its holder answers when it has something), once hedgeAfter
// passed without an answer; calls still running when one answers are
// cancelled.
func (r *Reader) ask(ctx context.Context, addrs []string, req request) ([]byte, error) {
	if len(addrs) == 0 {
		return nil, ErrNoHolder
	}
	b := encodeRequest(req)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the calls still running
	type answer struct {
		resp []byte
		err  error
	}
	answers := make(chan answer, len(addrs))
	running, next := 0, 0
	start := func() {
		addr := addrs[next]
		next++
		running++
		go func() {
			cctx, done := context.WithTimeout(ctx, r.timeout+req.wait)
			defer done()
			resp, err := r.call.Call(cctx, addr, Service, b)
			answers <- answer{resp, err}
		}()
	}
	start()
	var last error
	var notFound []byte // a "not found" answer, believed once no call is left
	for running > 0 {
		var hedge <-chan time.Time
		if req.wait == 0 && next < len(addrs) {
			hedge = time.After(hedgeAfter)
		}
		select {
		case a := <-answers:
			running--
			if a.err == nil {
				body, err := decodeStatus(a.resp)
				if !errors.Is(err, streams.ErrStreamNotFound) || running == 0 && notFound == nil {
					return body, err
				}
				// A holder behind the others (a follower that has not
				// applied the stream's creation yet) must not answer
				// for them: the calls under way are waited for.
				notFound = a.resp
				continue
			}
			last = a.err
			if next < len(addrs) {
				start()
			}
		case <-hedge:
			start()
		}
	}
	if notFound != nil {
		return decodeStatus(notFound)
	}
	return nil, fmt.Errorf("%w: %w", ErrNoHolder, last)
}

// ListStreams lists every stream of the cluster, sorted by name: the
// local store's for the shards held here, a holder's for the others.
// The streams of a shard no holder of which answered are left out
// (logged; Listing says which shards).
func (r *Reader) ListStreams() []streams.StreamInfo {
	infos, _ := r.Listing()
	return infos
}

// Listing is ListStreams, and the shards whose streams it lacks because
// none of their holders answered, sorted.
func (r *Reader) Listing() ([]streams.StreamInfo, []int) {
	n := r.place.Shards()
	if n == 0 {
		return r.local.ListStreams(), nil
	}
	var out []streams.StreamInfo
	for _, info := range r.local.ListStreams() {
		if local, _ := r.place.Holders(r.place.ShardOf(info.Name)); local {
			out = append(out, info)
		}
	}
	remote, unlisted := r.remoteStreams(n)
	out = append(out, remote...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, unlisted
}

// remoteStreams lists the streams of the shards not held here, and the
// shards no holder listed. A shard's listing is kept for listFor and used
// only while the shard is still held elsewhere; the shards whose listings
// are missing or older are asked for all at once.
func (r *Reader) remoteStreams(n int) ([]streams.StreamInfo, []int) {
	var infos []streams.StreamInfo
	var unlisted []int
	type ask struct {
		shard int
		addrs []string
	}
	var asks []ask
	r.mu.Lock()
	for i := range n {
		local, addrs := r.place.Holders(i)
		if local {
			continue
		}
		if l, ok := r.mu.listed[i]; ok && time.Since(l.at) < listFor {
			infos = append(infos, l.infos...)
			continue
		}
		asks = append(asks, ask{i, addrs})
	}
	r.mu.Unlock()
	if len(asks) == 0 {
		return infos, nil
	}
	got := make([][]streams.StreamInfo, len(asks))
	errs := make([]error, len(asks))
	var wg sync.WaitGroup
	for j, a := range asks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, err := r.ask(context.Background(), a.addrs, request{op: opList, shard: a.shard})
			if err == nil {
				got[j], err = decodeInfos(body)
			}
			errs[j] = err
		}()
	}
	wg.Wait()
	now := time.Now()
	r.mu.Lock()
	if r.mu.listed == nil {
		r.mu.listed = map[int]shardListing{}
	}
	for j, a := range asks {
		if errs[j] != nil {
			continue
		}
		r.mu.listed[a.shard] = shardListing{at: now, infos: got[j]}
	}
	r.mu.Unlock()
	for j, a := range asks {
		if errs[j] != nil {
			unlisted = append(unlisted, a.shard)
			r.log.Warn("cannot list the streams of a shard held elsewhere", "shard", a.shard, "error", errs[j])
			continue
		}
		infos = append(infos, got[j]...)
	}
	slices.Sort(unlisted)
	return infos, unlisted
}

// DescribeStream describes a stream wherever it is held.
func (r *Reader) DescribeStream(name string) (streams.StreamInfo, error) {
	addrs := r.where(name)
	if addrs == nil {
		return r.local.DescribeStream(name)
	}
	body, err := r.ask(context.Background(), addrs, request{op: opDescribe, shard: r.place.ShardOf(name), stream: name})
	if err != nil {
		return streams.StreamInfo{}, err
	}
	infos, err := decodeInfos(body)
	if err != nil {
		return streams.StreamInfo{}, err
	}
	if len(infos) != 1 {
		return streams.StreamInfo{}, fmt.Errorf("%w: %d stream infos", ErrBadRequest, len(infos))
	}
	return infos[0], nil
}

// Read reads a page of a stream's records wherever it is held.
func (r *Reader) Read(name string, from uint64, opts streams.ReadOptions) ([]streams.Record, error) {
	addrs := r.where(name)
	if addrs == nil {
		return r.local.Read(name, from, opts)
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 1000
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 4 << 20
	}
	body, err := r.ask(context.Background(), addrs, request{op: opRead, shard: r.place.ShardOf(name), stream: name,
		from: from, maxRecords: min(opts.MaxRecords, maxPageRecords), maxBytes: min(opts.MaxBytes, maxPageBytes)})
	if err != nil {
		return nil, err
	}
	return decodeRecords(body)
}

// Scan calls fn for the records in [from, to) in offset order, page by
// page, wherever the stream is held.
func (r *Reader) Scan(ctx context.Context, name string, from, to uint64, fn func(streams.Record) (bool, error)) error {
	if r.where(name) == nil {
		return r.local.Scan(ctx, name, from, to, fn)
	}
	for from < to {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := r.Read(name, from, streams.ReadOptions{MaxRecords: int(min(to-from, maxPageRecords))})
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for _, rec := range page {
			if rec.Offset >= to {
				return nil
			}
			more, err := fn(rec)
			if err != nil || !more {
				return err
			}
		}
		from = page[len(page)-1].Offset + 1
	}
	return nil
}

// OffsetAt returns the first offset at or after t, wherever the stream
// is held.
func (r *Reader) OffsetAt(name string, t time.Time) (uint64, error) {
	addrs := r.where(name)
	if addrs == nil {
		return r.local.OffsetAt(name, t)
	}
	body, err := r.ask(context.Background(), addrs, request{op: opOffsetAt, shard: r.place.ShardOf(name), stream: name, at: t.UnixNano()})
	if err != nil {
		return 0, err
	}
	return decodeOffset(body)
}

// longPoll is how long a holder keeps a remote Notify waiting.
const longPoll = 5 * time.Second

// Notify returns a channel closed when the stream grows past next. For a
// stream held elsewhere the channel closes when the holder says it grew,
// or after the long poll (the caller reads again and finds nothing new).
func (r *Reader) Notify(name string) (<-chan struct{}, uint64, error) {
	addrs := r.where(name)
	if addrs == nil {
		return r.local.Notify(name)
	}
	info, err := r.DescribeStream(name)
	if err != nil {
		return nil, 0, err
	}
	// A poll under way for the stream serves this caller too: it was
	// asked from an offset no later than this one, so it answers when the
	// stream grows past this one, or at once. Callers that ask after each
	// batch while catching up would otherwise each leave a poll open on
	// both nodes for up to longPoll.
	r.mu.Lock()
	if ch, ok := r.mu.polls[name]; ok {
		r.mu.Unlock()
		return ch, info.NextOffset, nil
	}
	if r.mu.polls == nil {
		r.mu.polls = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	r.mu.polls[name] = ch
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			delete(r.mu.polls, name)
			r.mu.Unlock()
			close(ch)
		}()
		_, err := r.ask(context.Background(), addrs, request{op: opWait, shard: r.place.ShardOf(name), stream: name,
			from: info.NextOffset, wait: longPoll})
		if err != nil && !errors.Is(err, streams.ErrStreamNotFound) {
			// No holder answered: do not spin.
			time.Sleep(time.Second)
		}
	}()
	return ch, info.NextOffset, nil
}

// changedEvery is how often the consumers of StreamsChanged look again
// when streams are held elsewhere (their creations are not signalled),
// or may be soon: the cluster has not formed yet. heldEvery is how often
// they do when this node holds every shard, in case a layout change moved
// some away meanwhile.
const (
	changedEvery = time.Second
	heldEvery    = 10 * time.Second
)

// StreamsChanged returns a channel closed when a stream is created or
// deleted here, or after a second when other nodes hold shards or the
// cluster has not formed yet (a consumer that asked before it formed
// would otherwise wait for a local change only, and never see the streams
// of the shards held elsewhere), or after heldEvery otherwise.
func (r *Reader) StreamsChanged() <-chan struct{} {
	local := r.local.StreamsChanged()
	every := changedEvery
	if n := r.place.Shards(); n > 0 {
		every = heldEvery
		for i := range n {
			if held, _ := r.place.Holders(i); !held {
				every = changedEvery
				break
			}
		}
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		t := time.NewTimer(every)
		defer t.Stop()
		select {
		case <-local:
		case <-t.C:
		}
	}()
	return ch
}
