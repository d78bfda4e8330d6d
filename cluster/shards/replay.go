package shards

import (
	"fmt"
	"slices"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/streams"
)

// Results of replayed appends.
//
// A replica that restarts replays the log from its newest snapshot, and
// the entries its store holds already (up to the store's applied index)
// are not applied again: only their append ids go back into the dedupe
// window. Their results, which a retry of one of them is answered with,
// are derived instead: the snapshot lists the shard's streams with their
// next offsets, and each replayed append takes the next offset of its
// stream as the state machine gave it when it applied the entry first.
// Stream creations and deletions are followed too, and those with ids
// get their results derived the same way (created, or the stream exists;
// deleted, or there was none).
//
// The derivation follows the store's rules only as far as offsets go: it
// refuses an append to a missing stream of an invalid name, takes every
// other append to a missing stream for one that creates it (the store's
// auto_create) and every record for one the store took. So when
// the replay reaches the store's applied index, the derived next offsets
// are checked against the store's streams; the results are learned only
// if every stream agrees. Any refusal the derivation did not foresee
// shifts a stream's offsets and fails the check, and the replay's
// results then stay unknown (answered with offset 0, dedupe.go). A
// deletion takes a stream out of both the derivation and the store, and
// with it whatever the check could have said about it: the results
// derived for the stream until then are dropped (unknown too), or a
// refusal followed by a deletion would be learned as a stored append.

// replayTally derives the results of a replay. Raft's goroutine only.
type replayTally struct {
	last uint64 // the index of the entry followed last (or the snapshot's)
	end  uint64 // the store's applied index: the replay ends there
	// streams is each stream's next offset as the log made it so far.
	streams map[string]uint64
	// derived are the results of the replay's appends; only the last
	// window's worth are kept (older ids leave the window anyway).
	derived []derivedResult
	broken  string // why the derivation stopped, if it did
}

type derivedResult struct {
	id     appendID
	stream string
	result appendResult
}

// newReplayTally starts a derivation from the shard's streams at index
// from (a snapshot's, or nothing at index 0) up to end.
func newReplayTally(from, end uint64, sts []streamState) *replayTally {
	t := &replayTally{last: from, end: end, streams: make(map[string]uint64, len(sts))}
	for _, st := range sts {
		t.streams[st.name] = st.next
	}
	return t
}

// entry follows one replayed entry (cmds nil for one that is not a
// command, or is undecodable: the state machine skipped it too). isNew
// reports, per command, whether the state machine remembered its append
// id just now (not a retry of one in the window).
func (t *replayTally) entry(l *raft.Log, cmds []appendCmd, isNew []bool) {
	if t.broken != "" {
		return
	}
	// Raft hands the state machine every command in log order (and no
	// no-op entries, so indexes may skip).
	if l.Index <= t.last {
		t.broken = fmt.Sprintf("entry %d replayed after %d", l.Index, t.last)
		return
	}
	t.last = l.Index
	for j, c := range cmds {
		if admin(c) && !isNew[j] {
			continue // a retry of one in the window: it did nothing
		}
		switch c.kind {
		case kindCreate:
			var r appendResult
			if _, ok := t.streams[c.stream]; ok {
				r.err = streams.ErrStreamExists
			} else if r.err = streams.ValidateName(c.stream); r.err == nil {
				t.streams[c.stream] = 0
			}
			t.derive(c, r)
		case kindDelete:
			var r appendResult
			if _, ok := t.streams[c.stream]; !ok {
				r.err = streams.ErrStreamNotFound
			}
			// The store no longer holds what the derivation said of this
			// stream: nothing derived for it can be checked any more.
			delete(t.streams, c.stream)
			t.derived = slices.DeleteFunc(t.derived, func(d derivedResult) bool { return d.stream == c.stream })
			t.derive(c, r)
		case kindAppend:
			if fenced(c, l) || !isNew[j] {
				continue // stored nothing
			}
			var r appendResult
			if _, ok := t.streams[c.stream]; !ok && len(c.records) == 0 {
				// Refused or not (auto_create), it changed nothing the
				// check below could tell apart.
				t.broken = fmt.Sprintf("entry %d: an append of no records to stream %q, which it may or may not have created", l.Index, c.stream)
				return
			}
			if first, ok := t.streams[c.stream]; ok {
				r.first = first
				t.streams[c.stream] = first + uint64(len(c.records))
			} else if r.err = streams.ValidateName(c.stream); r.err == nil {
				t.streams[c.stream] = uint64(len(c.records)) // created by its append
			}
			t.derive(c, r)
		}
	}
}

// derive records r as the result of c, a command the state machine
// applied (not a retry), if it has an id.
func (t *replayTally) derive(c appendCmd, r appendResult) {
	if c.id.producer == 0 {
		return
	}
	t.derived = append(t.derived, derivedResult{id: c.id, stream: c.stream, result: r})
	if len(t.derived) >= 2*dedupeWindow {
		n := copy(t.derived, t.derived[len(t.derived)-dedupeWindow:])
		t.derived = t.derived[:n]
	}
}

// check compares the derived next offsets with the store's streams of
// the shard; "" if they agree.
func (t *replayTally) check(store Store, shard, shards int) string {
	if t.broken != "" {
		return t.broken
	}
	have := shardStreams(store, shard, shards)
	if len(have) != len(t.streams) {
		return fmt.Sprintf("%d streams derived, the store has %d", len(t.streams), len(have))
	}
	for _, st := range have {
		next, ok := t.streams[st.name]
		if !ok {
			return fmt.Sprintf("stream %q is in the store, not derived", st.name)
		}
		if next != st.next {
			return fmt.Sprintf("stream %q: next offset %d derived, %d in the store", st.name, next, st.next)
		}
	}
	return ""
}

// finishReplay ends the derivation: its results go into the window if
// they agree with the store.
func (f *fsm) finishReplay() {
	t := f.replay
	f.replay = nil
	if why := t.check(f.store, f.shard, f.shards); why != "" {
		f.logger.Info("results of replayed appends not derived; retries of them are answered with offset 0",
			"reason", why)
		return
	}
	// Newest first: an id in the list twice (evicted, stored again) has
	// the newest copy's result, as the window does.
	for i := len(t.derived) - 1; i >= 0; i-- {
		f.dd.learn(t.derived[i].id, t.derived[i].result)
	}
}

// replayed remembers the append ids of an entry the store holds already
// and follows it in the derivation under way (cmds nil: an entry that is
// not a command, or is undecodable).
func (f *fsm) replayed(l *raft.Log, version byte, cmds []appendCmd) {
	var isNew []bool
	if f.replay != nil {
		isNew = make([]bool, len(cmds))
	}
	for j, c := range cmds {
		if (c.kind == kindAppend || admin(c)) && !fenced(c, l) {
			if _, dup := f.dd.lookup(c.id); !dup && !(version >= entryVersion5 && f.dd.tooLate(c.id)) {
				f.dd.add(c.id, nil)
				if isNew != nil {
					isNew[j] = true
				}
			}
		}
	}
	if f.replay == nil {
		return
	}
	f.replay.entry(l, cmds, isNew)
	if l.Index >= f.replay.end {
		f.finishReplay()
	}
}
