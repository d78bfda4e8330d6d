package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/shards"
)

// State is the cluster's metadata as the group has applied it.
type State struct {
	// Layout is the shard layout; version 0 with no shards until the
	// first is set.
	Layout shards.Layout `json:"layout"`
	// Removed lists the nodes removed for good, sorted.
	Removed []string `json:"removed,omitempty"`
	// Incarnations records, by node id, the data directory each node
	// registered (its identity's incarnation): a node that comes back with
	// another one lost its data (ErrLostData).
	Incarnations map[string]string `json:"incarnations,omitempty"`
}

// clone returns a deep copy of st.
func (st State) clone() State {
	out := State{Layout: shards.Layout{Version: st.Layout.Version}, Removed: slices.Clone(st.Removed), Incarnations: maps.Clone(st.Incarnations)}
	for _, peers := range st.Layout.Shards {
		out.Layout.Shards = append(out.Layout.Shards, slices.Clone(peers))
	}
	return out
}

// IsRemoved reports whether node id was removed for good.
func (st State) IsRemoved(id string) bool {
	_, ok := slices.BinarySearch(st.Removed, id)
	return ok
}

// ErrStale: a layout was planned from a version that is no longer the
// current one (another change came first); plan again.
var ErrStale = errors.New("meta: the layout changed meanwhile")

// ErrRemoved: the node was removed from the cluster for good.
var ErrRemoved = errors.New("meta: the node was removed from the cluster")

// ErrLostData: a node came back with another data directory than the one
// the cluster knows it by (its data was lost, or node.data_dir points
// elsewhere). Letting it take part would let it vote with an empty log,
// which can undo acknowledged writes.
var ErrLostData = errors.New("meta: the node is known with another data directory")

// command is one change of the metadata, an entry of the group's log.
type command struct {
	Op string `json:"op"` // "layout", "remove" or "incarnation"
	// Layout (op "layout") replaces the layout if the current version is
	// From.
	Layout *shards.Layout `json:"layout,omitempty"`
	From   uint64         `json:"from,omitempty"`
	// Node (op "remove") is removed for good; (op "incarnation") has
	// data directory Incarnation.
	Node        string `json:"node,omitempty"`
	Incarnation string `json:"incarnation,omitempty"`
}

// fsm applies the group's log to the metadata state.
type fsm struct {
	mu      sync.Mutex // guards st
	st      State
	changed func() // called after each applied change (not under mu)
}

func (f *fsm) state() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.clone()
}

// Apply applies one entry; the result is nil or an error for the
// proposer.
func (f *fsm) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("meta: entry %d: %w", l.Index, err)
	}
	err := f.apply(c)
	if err == nil && f.changed != nil {
		f.changed()
	}
	return err
}

func (f *fsm) apply(c command) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c.Op {
	case "layout":
		if c.Layout == nil {
			return errors.New("meta: a layout change without a layout")
		}
		if len(f.st.Layout.Shards) > 0 && f.st.Layout.Version != c.From {
			return fmt.Errorf("%w: planned from version %d, now %d", ErrStale, c.From, f.st.Layout.Version)
		}
		if len(f.st.Layout.Shards) > 0 && c.Layout.Version <= c.From {
			return fmt.Errorf("meta: layout version %d does not follow %d", c.Layout.Version, c.From)
		}
		for _, peers := range c.Layout.Shards {
			for _, p := range peers {
				if f.st.IsRemoved(p.ID) {
					return fmt.Errorf("%w: %s is placed on a shard", ErrRemoved, p.ID)
				}
			}
		}
		f.st.Layout = *c.Layout
	case "remove":
		if c.Node == "" {
			return errors.New("meta: remove without a node")
		}
		if i, ok := slices.BinarySearch(f.st.Removed, c.Node); !ok {
			f.st.Removed = slices.Insert(f.st.Removed, i, c.Node)
		}
	case "incarnation":
		if c.Node == "" || c.Incarnation == "" {
			return errors.New("meta: an incarnation without a node or an incarnation")
		}
		if f.st.IsRemoved(c.Node) {
			return fmt.Errorf("%w: %s", ErrRemoved, c.Node)
		}
		switch have := f.st.Incarnations[c.Node]; have {
		case c.Incarnation:
		case "":
			if f.st.Incarnations == nil {
				f.st.Incarnations = map[string]string{}
			}
			f.st.Incarnations[c.Node] = c.Incarnation
		default:
			return fmt.Errorf("%w: node %s registered data directory %s, this one is %s", ErrLostData, c.Node, have, c.Incarnation)
		}
	default:
		return fmt.Errorf("meta: unknown change %q", c.Op)
	}
	return nil
}

// Snapshot captures the whole state.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := json.Marshal(f.state())
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st State
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("meta: snapshot: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	if f.changed != nil {
		f.changed()
	}
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}
