package shards

import (
	"encoding/json"
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
// first. It is fixed when the cluster forms.
type Layout struct {
	// Version grows with each change of the layout (0: the founding
	// layout, kept before layouts had versions).
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
