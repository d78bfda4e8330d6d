package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/streams"
)

// Catching a replica up from a peer.
//
// A replica that was away while the others compacted the log it missed
// receives a snapshot instead (snapshot.go): the shard's streams at an
// index, without records, and its key/value namespace. Restore makes the
// store match it: it replaces the namespace (kv.go) at once, deletes
// the shard's streams the snapshot does not list, creates the ones it
// lacks (at their leader's creation time, which tells two streams of one
// name apart), and fetches the records each stream lacks from a peer
// replica (fetch.go), page by page, storing the bytes the peer stored.
// The applied-index marker is written once every page is in, synced and
// checked, so the store claims the snapshot's index only once it holds
// all of it.
//
// A crash, or a failure, midway leaves some streams ahead of the marker.
// Applying the log over them would store records twice, so the first
// batch of a restore records its target (the marker "<log>/restore"); a
// replica whose target is ahead of its applied index finishes the
// restore before it applies anything else, and a restore resumes where
// the streams stand.

// restoreSuffix names the marker of a restore's target index.
const restoreSuffix = "/restore"

// clearingSuffix names the marker a node sets (to 1) before it clears a
// shard's part of its store outside the log (clearStore), and deletes
// last with the others: while it is set, the node answers no fetch for
// the shard, since a stream it deleted already would read as one the log
// deleted.
const clearingSuffix = "/clearing"

// adminSuffix names the marker of the last entry whose stream creation or
// deletion this node's store made (fsm.admin).
const adminSuffix = "/admin"

// fetchTimeout bounds one fetch from a peer.
const fetchTimeout = 10 * time.Second

// ErrNoPeer: no peer replica could provide what a replica lacks (all
// unreachable, behind the snapshot, or answering malformed pages).
var ErrNoPeer = errors.New("shards: no peer can catch this replica up")

// peerSource is how a replica reaches its peers to catch up.
type peerSource struct {
	self string
	// layout returns the shard's replicas in the current layout.
	layout func() []Peer
	call   Forwarder
	// snapshots hold the group's snapshots, whose configurations name
	// the group's servers.
	snapshots raft.SnapshotStore
	// raft is the group, once it runs (its leader is asked first).
	raft atomic.Pointer[raft.Raft]
}

// peers lists the replicas to ask, this one excepted: the leader first,
// then the servers of the newest snapshot's configuration, then those of
// the layout.
func (s *peerSource) peers() []Peer {
	var out []Peer
	add := func(p Peer) {
		if p.ID == "" || p.ID == s.self || p.RPC == "" {
			return
		}
		for _, q := range out {
			if q.ID == p.ID {
				return
			}
		}
		out = append(out, p)
	}
	if r := s.raft.Load(); r != nil {
		addr, id := r.LeaderWithID()
		add(Peer{ID: string(id), RPC: string(addr)})
	}
	if s.snapshots != nil {
		if metas, err := s.snapshots.List(); err == nil && len(metas) > 0 {
			for _, srv := range metas[0].Configuration.Servers {
				add(Peer{ID: string(srv.ID), RPC: string(srv.Address)})
			}
		}
	}
	if s.layout != nil {
		for _, p := range s.layout() {
			add(p)
		}
	}
	return out
}

// catchUp makes the store hold the shard as snap describes it, fetching
// what it lacks from peers, and sets the applied-index marker to its
// index. It resumes a catch-up interrupted before.
func (f *fsm) catchUp(ctx context.Context, snap shardState) error {
	if f.src == nil {
		return fmt.Errorf("%w: %s: no peers to fetch from", ErrNoPeer, f.log)
	}
	if f.restoring.Load() != snap.index {
		// Also lower than a catch-up under way (a new leader sent an
		// older snapshot): the store then matches that one.
		if err := f.submitWait(streams.AppendRequest{AppliedLog: f.log + restoreSuffix, AppliedIndex: snap.index, NoSync: true}); err != nil {
			return fmt.Errorf("shards: %s: record the restore target: %w", f.log, err)
		}
		f.restoring.Store(snap.index)
	}
	// The namespace is replaced at once (a catch-up resumed writes it
	// again): it is small, and the peers may have changed theirs since.
	if err := f.replaceKV(snap.kv); err != nil {
		return fmt.Errorf("shards: %s: replace the key/value namespace: %w", f.log, err)
	}
	want := make(map[string]bool, len(snap.streams))
	for _, st := range snap.streams {
		want[st.name] = true
	}
	for _, st := range shardStreams(f.store, f.shard, f.shards) {
		if !want[st.name] {
			f.logger.Info("deleting a stream the shard no longer has", "stream", st.name)
			if err := f.store.DeleteStream(ctx, st.name); err != nil && !errors.Is(err, streams.ErrStreamNotFound) {
				return fmt.Errorf("shards: %s: delete %s: %w", f.log, st.name, err)
			}
		}
	}
	c := &catchUpRun{f: f, ctx: ctx, snap: snap, peers: f.src.peers()}
	for _, st := range snap.streams {
		if err := c.stream(st); err != nil {
			return err
		}
	}
	// The pages were installed without a sync: once synced, every stream
	// must be where the snapshot says before the marker says the store
	// holds it. A recovery from a failed write in the meantime reopened
	// the store from what had reached the disk and may have lost pages
	// (an install after one refuses to leave a hole; the last pages would
	// just be missing): the catch-up then fails, and is resumed from
	// where the streams stand.
	if err := f.store.Sync(ctx); err != nil {
		return fmt.Errorf("shards: %s: sync after catching up: %w", f.log, err)
	}
	for _, st := range snap.streams {
		info, err := f.store.DescribeStream(st.name)
		if err != nil {
			return fmt.Errorf("shards: %s: check %s after catching up: %w", f.log, st.name, err)
		}
		if info.NextOffset != st.next {
			return fmt.Errorf("shards: %s: %s ends at %d after catching up, the snapshot's at %d (the store lost pages in a recovery?)",
				f.log, st.name, info.NextOffset, st.next)
		}
	}
	if err := f.submitWait(streams.AppendRequest{AppliedLog: f.log, AppliedIndex: snap.index}); err != nil {
		return fmt.Errorf("shards: %s: applied index: %w", f.log, err)
	}
	f.logger.Info("replica caught up from its peers", "index", snap.index,
		"streams", len(snap.streams), "records", c.records, "pages", c.pages)
	return nil
}

// catchUpRun is one catch-up's progress.
type catchUpRun struct {
	f     *fsm
	ctx   context.Context
	snap  shardState
	peers []Peer
	good  int // the peer that answered last: asked first
	// records and pages fetched, for the log.
	records, pages int
}

// stream catches up one stream of the snapshot.
func (c *catchUpRun) stream(want streamState) error {
	f := c.f
	next, verify, err := c.prepare(want)
	if err != nil {
		return err
	}
	corrupt := 0 // corrupt pages in a row
	for next < want.next || verify {
		req := fetchRequest{shard: f.shard, stream: want.name, from: next, to: want.next, maxRecords: f.pageRecords, maxBytes: maxFetchBytes}
		if verify {
			req.from = next - 1
		}
		page, peer, err := c.fetch(req, want)
		if err != nil {
			return err
		}
		if page.gone {
			f.logger.Warn("a stream the peers deleted after the snapshot is left without its records until the log deletes it",
				"stream", want.name, "node", peer.ID, "from", next, "to", want.next)
			page.from, verify = want.next, false
		}
		if verify {
			verify = false
			same, err := c.sameRecord(want.name, next-1, page)
			if err != nil {
				return err
			}
			if !same {
				// Another stream of the same name: start it over.
				f.logger.Info("replacing a stream by another of the same name", "stream", want.name, "node", peer.ID)
				if next, err = c.recreate(want); err != nil {
					return err
				}
				continue
			}
			page.from, page.records = next, page.records[1:]
		}
		at := page.from
		if at >= want.next {
			// Every record up to the snapshot's next offset is trimmed
			// on the peer: the stream is empty at its next offset.
			at, page.records = want.next, nil
		}
		if at > next && !page.gone {
			f.logger.Warn("records trimmed on the peer by retention are skipped", "stream", want.name,
				"node", peer.ID, "from", next, "to", at)
		}
		end := at + uint64(len(page.records))
		// Skip only past records the peer no longer has: a store that
		// lost pages installed before (a recovery) is refused a hole.
		req2 := streams.InstallRequest{Stream: want.name, At: at, Skip: at > next, Records: page.records}
		if end >= want.next {
			req2.LastTimestamp = timeOf(want.lastTS)
		}
		if err := f.store.Install(c.ctx, req2); err != nil {
			if errors.Is(err, streams.ErrCorrupt) {
				f.logger.Warn("a peer's page holds a corrupt record; asking another peer", "stream", want.name, "node", peer.ID, "error", err)
				if corrupt++; corrupt >= len(c.peers) {
					return fmt.Errorf("%w: %s, stream %s: every peer answered a corrupt page: %w", ErrNoPeer, f.log, want.name, err)
				}
				c.good++ // the next peer first
				continue
			}
			return fmt.Errorf("shards: %s: install %s at %d: %w", f.log, want.name, at, err)
		}
		corrupt = 0
		c.records += len(page.records)
		c.pages++
		next = end
	}
	return nil
}

// prepare makes the local stream one the snapshot's can be fetched onto
// and returns its next offset, and whether its newest record must be
// compared with a peer's first (same name, same position, but a creation
// time that differs, as for streams created by each node on its own). A
// stream without records whose creation time differs is created again
// with the snapshot's: kept, it would pass its own creation time on in
// this replica's snapshots, and a replica catching up from those would
// keep an older stream's records of that name.
func (c *catchUpRun) prepare(want streamState) (next uint64, verify bool, err error) {
	info, err := c.f.store.DescribeStream(want.name)
	if errors.Is(err, streams.ErrStreamNotFound) {
		return c.create(want)
	}
	if err != nil {
		return 0, false, fmt.Errorf("shards: %s: %w", c.f.log, err)
	}
	have := streamStateOf(info)
	switch {
	case have.retention != want.retention || have.next > want.next:
		// Not the snapshot's stream: its records cannot be kept.
	case have.created == want.created:
		return have.next, false, nil
	case info.FirstOffset < info.NextOffset:
		return have.next, true, nil
	}
	c.f.logger.Info("replacing a stream by another of the same name", "stream", want.name)
	next, err = c.recreate(want)
	return next, false, err
}

func (c *catchUpRun) recreate(want streamState) (uint64, error) {
	if err := c.f.store.DeleteStream(c.ctx, want.name); err != nil && !errors.Is(err, streams.ErrStreamNotFound) {
		return 0, fmt.Errorf("shards: %s: delete %s: %w", c.f.log, want.name, err)
	}
	next, _, err := c.create(want)
	return next, err
}

func (c *catchUpRun) create(want streamState) (uint64, bool, error) {
	if _, err := c.f.store.CreateStreamAt(c.ctx, want.name, want.retention, time.Unix(0, want.created)); err != nil {
		return 0, false, fmt.Errorf("shards: %s: create %s: %w", c.f.log, want.name, err)
	}
	return 0, false, nil
}

// sameRecord reports whether the local record at offset off is the first
// of a peer's page, byte for byte (its timestamp included).
func (c *catchUpRun) sameRecord(stream string, off uint64, page fetchPage) (bool, error) {
	if page.from != off || len(page.records) == 0 {
		return false, nil // trimmed on the peer: cannot tell
	}
	local, err := c.f.store.ReadStored(stream, off, off+1, 1, 1)
	if err != nil {
		return false, fmt.Errorf("shards: %s: read %s: %w", c.f.log, stream, err)
	}
	return local.From == off && len(local.Records) == 1 && bytes.Equal(local.Records[0], page.records[0]), nil
}

// fetch asks the peers in turn, from the one that answered last, for a
// page of want's records, and returns the first usable answer: from a
// peer whose stream is the snapshot's (same creation time, or the peer
// has applied the log past the snapshot) and reaches its next offset.
// When none has one, but a peer has applied the log past the snapshot
// and deleted the stream since, it returns a page marked gone: the
// records are gone for good (and the log after the snapshot deletes the
// stream here too).
func (c *catchUpRun) fetch(req fetchRequest, want streamState) (fetchPage, Peer, error) {
	f := c.f
	if len(c.peers) == 0 {
		return fetchPage{}, Peer{}, fmt.Errorf("%w: %s: no other replica", ErrNoPeer, f.log)
	}
	var errs []error
	var gone *Peer
	for i := range c.peers {
		k := (c.good + i) % len(c.peers)
		p := c.peers[k]
		ctx, cancel := context.WithTimeout(c.ctx, fetchTimeout)
		resp, err := f.src.call.Call(ctx, p.RPC, FetchService, encodeFetchRequest(req))
		cancel()
		var page fetchPage
		if err == nil {
			page, err = decodeFetchPage(resp, req)
		}
		if err == nil {
			err = usable(page, want, c.snap.index)
		}
		if err != nil {
			if c.ctx.Err() != nil {
				return fetchPage{}, p, c.ctx.Err()
			}
			if errors.Is(err, errGone) && gone == nil {
				gone = &c.peers[k]
			}
			f.logger.Warn("cannot catch up from this peer; trying the next", "stream", want.name, "node", p.ID, "error", err)
			errs = append(errs, fmt.Errorf("%s: %w", p.ID, err))
			continue
		}
		c.good = k
		return page, p, nil
	}
	if gone != nil {
		return fetchPage{gone: true}, *gone, nil
	}
	return fetchPage{}, Peer{}, fmt.Errorf("%w: %s, stream %s: %w", ErrNoPeer, f.log, want.name, errors.Join(errs...))
}

// errPeerBehind: a peer has not applied the log up to a snapshot's
// stream yet.
var errPeerBehind = errors.New("the peer is behind the snapshot")

// errGone: a peer applied the log past a snapshot and deleted the
// snapshot's stream since (or replaced it by a shorter one).
var errGone = errors.New("the peer deleted the stream after the snapshot")

// usable tells whether a peer's page can catch up want, a stream of the
// snapshot at index.
func usable(page fetchPage, want streamState, index uint64) error {
	past := page.applied >= index
	switch {
	case !page.exists && past:
		return fmt.Errorf("%w: it has no stream %s (applied index %d, the snapshot's %d)", errGone, want.name, page.applied, index)
	case !page.exists:
		return fmt.Errorf("%w: it has no stream %s (applied index %d, the snapshot's %d)", errPeerBehind, want.name, page.applied, index)
	case page.stream.created != want.created && !past:
		return fmt.Errorf("%w: another stream %s (applied index %d, the snapshot's %d)", errPeerBehind, want.name, page.applied, index)
	case page.stream.next < want.next && page.stream.created != want.created:
		return fmt.Errorf("%w: another stream %s ends at %d, the snapshot's at %d", errGone, want.name, page.stream.next, want.next)
	case page.stream.next < want.next:
		return fmt.Errorf("%w: %s ends at %d, the snapshot's at %d", errPeerBehind, want.name, page.stream.next, want.next)
	}
	return nil
}

func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// submitWait submits a request to the store and waits for its outcome.
func (f *fsm) submitWait(req streams.AppendRequest) error { return submitWait(f.store, req) }

// submitWait submits req to store and waits for its outcome.
func submitWait(store Store, req streams.AppendRequest) error {
	errc := make(chan error, 1)
	req.Done = func(_ uint64, err error) { errc <- err }
	if err := store.Submit(req); err != nil {
		return err
	}
	return <-errc
}
