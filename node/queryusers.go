package node

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/mqstream/mqstream/cq"
	"github.com/mqstream/mqstream/query"
)

// Continuous queries run on the node that created them, so in a cluster
// DROP STREAM (and DELETE /v1/streams/{name}) asks every other member
// whether one of its queries reads the stream or writes into it, and
// refuses, naming them, if any does: a query elsewhere would otherwise
// read a stream that vanished under it. A member that does not answer
// within statsTimeout is left out (logged): it runs none of its queries
// while it is unreachable, and one that reads the stream finds it gone when
// it comes back, as a query of a stream deleted directly would.

// queryUsersService answers which queries of the node read or write a
// stream (cq.Manager.Users).
const queryUsersService = "queries.users"

// queryUsers is a node's answer: its queries' labels.
type queryUsers struct {
	Readers []string `json:"readers,omitempty"`
	Writers []string `json:"writers,omitempty"`
}

// serveQueryUsers registers queryUsersService.
func (n *Node) serveQueryUsers() {
	n.repl.mux.Handle(queryUsersService, func(_ context.Context, _ string, req []byte) ([]byte, error) {
		readers, writers := n.queries.Users(string(req))
		return json.Marshal(queryUsers{Readers: readers, Writers: writers})
	})
}

// clusterQueries is the node's continuous queries as SQL and the REST API
// use them in a cluster: DropStream checks every node's queries.
type clusterQueries struct {
	*cq.Manager
	n *Node
}

// DropStream refuses while a query of any node that answers reads stream
// name or writes into it; then this node's manager drops it (checking its
// own queries again, under its lock).
func (q clusterQueries) DropStream(ctx context.Context, name string) error {
	peers := fromPeers[queryUsers](ctx, q.n, queryUsersService, []byte(name))
	if len(peers) > 0 {
		local, localW := q.Manager.Users(name)
		readers, writers := mergeUsers(local, localW, peers)
		if len(readers)+len(writers) > len(local)+len(localW) {
			return cq.InUse(name, readers, writers)
		}
	}
	return q.Manager.DropStream(ctx, name)
}

// mergeUsers lists this node's readers and writers of a stream, then the
// other nodes' (in node order) with the node named, leaving out those this
// node has too: a view is kept on every node, and named once.
func mergeUsers(readers, writers []string, peers map[string]queryUsers) ([]string, []string) {
	nodes := slices.Sorted(maps.Keys(peers))
	add := func(out []string, node string, labels []string) []string {
		for _, l := range labels {
			if !slices.Contains(readers, l) && !slices.Contains(writers, l) {
				out = append(out, fmt.Sprintf("%s (on %s)", l, node))
			}
		}
		return out
	}
	var r, w []string
	for _, node := range nodes {
		r = add(r, node, peers[node].Readers)
		w = add(w, node, peers[node].Writers)
	}
	return append(slices.Clone(readers), r...), append(slices.Clone(writers), w...)
}

// queriesFront is what SQL and the REST API use as the node's queries:
// nil without them, the manager itself standalone, clusterQueries in a
// cluster.
func (n *Node) queriesFront() query.Queries {
	switch {
	case n.queries == nil:
		return nil
	case n.repl == nil:
		return n.queries
	default:
		return clusterQueries{Manager: n.queries, n: n}
	}
}
