package shards

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
)

// Peer is a node as placement knows it: its id and the RPC address its
// Raft groups and forwards use.
type Peer struct {
	ID  string `json:"id"`
	RPC string `json:"rpc"`
}

// Layout says which nodes replicate each shard, the preferred leader
// first. The founding layout (Plan) is version 0; each change of it
// (Replan) has the next version, and a running Set follows it (Update).
type Layout struct {
	// Version grows with each change of the layout (0: the founding
	// layout, also a layout kept before layouts had versions).
	Version uint64   `json:"version,omitempty"`
	Shards  [][]Peer `json:"shards"`
}

// ShardOf returns the shard of stream: FNV-1a of its name modulo shards.
func ShardOf(stream string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(stream))
	return int(h.Sum32() % uint32(shards))
}

// Plan lays shards out over members round-robin: shard i is replicated on
// min(rf, len(members)) members from i mod n on (members sorted by id),
// the first of them its preferred leader. Every member computes the same
// layout from the same members.
func Plan(members []Peer, shards, rf int) (Layout, error) {
	if len(members) == 0 || shards < 1 || rf < 1 {
		return Layout{}, fmt.Errorf("shards: cannot plan %d shards with replication factor %d over %d members", shards, rf, len(members))
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	for i := 1; i < len(ms); i++ {
		if ms[i].ID == ms[i-1].ID {
			return Layout{}, fmt.Errorf("shards: member %q listed twice", ms[i].ID)
		}
	}
	n := min(rf, len(ms))
	l := Layout{Shards: make([][]Peer, shards)}
	for i := range l.Shards {
		for j := 0; j < n; j++ {
			l.Shards[i] = append(l.Shards[i], ms[(i+j)%len(ms)])
		}
	}
	return l, nil
}

// Holds reports whether node id replicates shard i.
func (l Layout) Holds(i int, id string) bool {
	return slices.ContainsFunc(l.Shards[i], func(p Peer) bool { return p.ID == id })
}

// Marshal encodes the layout to keep it in the data directory.
func (l Layout) Marshal() ([]byte, error) { return json.Marshal(l) }

// UnmarshalLayout decodes a layout written by Marshal.
func UnmarshalLayout(b []byte) (Layout, error) {
	var l Layout
	if err := json.Unmarshal(b, &l); err != nil {
		return Layout{}, fmt.Errorf("shards: layout: %w", err)
	}
	if len(l.Shards) == 0 {
		return Layout{}, fmt.Errorf("shards: layout has no shards")
	}
	return l, nil
}

// ErrBadLayout: a layout that does not fit the cluster (another shard
// count, a shard without replicas, a replica listed twice or without an
// id or address).
var ErrBadLayout = errors.New("shards: bad layout")

// ErrStaleLayout: a layout older than the one a Set follows.
var ErrStaleLayout = errors.New("shards: layout older than the current one")

// validate checks that l lays out shards shards.
func (l Layout) validate(shards int) error {
	if len(l.Shards) != shards {
		return fmt.Errorf("%w: %d shards, the cluster has %d", ErrBadLayout, len(l.Shards), shards)
	}
	var errs []error
	for i, peers := range l.Shards {
		if len(peers) == 0 {
			errs = append(errs, fmt.Errorf("%w: shard %d has no replicas", ErrBadLayout, i))
		}
		for j, p := range peers {
			switch {
			case p.ID == "" || p.RPC == "":
				errs = append(errs, fmt.Errorf("%w: shard %d: replica %d has no id or no address (%q, %q)", ErrBadLayout, i, j, p.ID, p.RPC))
			case slices.ContainsFunc(peers[:j], func(q Peer) bool { return q.ID == p.ID }):
				errs = append(errs, fmt.Errorf("%w: shard %d: %q listed twice", ErrBadLayout, i, p.ID))
			}
		}
	}
	return errors.Join(errs...)
}

// clone returns a copy of l that shares nothing with it.
func (l Layout) clone() Layout {
	out := Layout{Version: l.Version, Shards: make([][]Peer, len(l.Shards))}
	for i, peers := range l.Shards {
		out.Shards[i] = slices.Clone(peers)
	}
	return out
}
