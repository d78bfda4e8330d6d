package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/api"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
)

// Consumer-group administration in cluster mode: one node runs each group,
// so a REST call about a group (stats, declare, delete, seek) that reaches
// another node is carried to the one running it, and its answer, sentinel
// error included, comes back.

// groupAdminService is the service that runs group administration here.
const groupAdminService = "groups.admin"

// groupAdmin is what the REST API gets as its consumer groups: the local
// manager standalone, the cluster-wide view in cluster mode.
type groupAdmin struct {
	n *Node
	clusterGroups
}

// adminRequest is a group administration call.
type adminRequest struct {
	Op       string              `json:"op"` // group, declare, delete, seek
	Name     string              `json:"name"`
	Filter   string              `json:"filter"`
	Stream   string              `json:"stream,omitempty"`
	Position string              `json:"position,omitempty"`
	Options  shared.GroupOptions `json:"options"`
}

// adminAnswer carries a result or an error with its kind.
type adminAnswer struct {
	Stats *shared.GroupStats `json:"stats,omitempty"`
	Kind  string             `json:"kind,omitempty"`
	Error string             `json:"error,omitempty"`
}

// adminKind names the sentinel error err wraps, for the answer.
func adminKind(err error) string {
	switch {
	case errors.Is(err, shared.ErrGroupNotFound):
		return "not_found"
	case errors.Is(err, shared.ErrGroupExists):
		return "exists"
	case errors.Is(err, shared.ErrNotStorable):
		return "not_storable"
	case errors.Is(err, shared.ErrInvalidGroup):
		return "invalid"
	case errors.Is(err, shared.ErrNotOwner):
		return "not_owner"
	case errors.Is(err, streams.ErrUnavailable):
		return "unavailable" // its store or shard refuses writes: 503, as on this node
	}
	return ""
}

// adminSentinel is the sentinel error an answer's kind names (nil: none).
func adminSentinel(kind string) error {
	for _, err := range []error{shared.ErrGroupNotFound, shared.ErrGroupExists, shared.ErrNotStorable, shared.ErrInvalidGroup, shared.ErrNotOwner, streams.ErrUnavailable} {
		if adminKind(err) == kind {
			return err
		}
	}
	return nil
}

func (g groupAdmin) Group(ctx context.Context, name, filter string) (shared.GroupStats, error) {
	st, err := g.n.groups.Group(ctx, name, filter)
	if errors.Is(err, shared.ErrNotOwner) {
		ans, ferr := g.forward(ctx, adminRequest{Op: "group", Name: name, Filter: filter})
		if ferr != nil {
			return shared.GroupStats{}, ferr
		}
		if ans.Stats == nil {
			return shared.GroupStats{}, fmt.Errorf("the node running $share/%s/%s answered without statistics", name, filter)
		}
		return *ans.Stats, nil
	}
	st.Node = g.n.id
	return st, err
}

// ownerWait bounds how long a group change waits for a node to run the
// group: while a shard elects a leader, or its new leader takes the
// group over, no node does (a moment, as an append waits for a leader).
const ownerWait = 5 * time.Second

// change runs a group change here if this node runs the group, otherwise
// on the node that does (req), trying again while no node does, for up
// to ownerWait.
func (g groupAdmin) change(ctx context.Context, local func() error, req adminRequest) error {
	deadline := time.Now().Add(ownerWait)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		err := local()
		if errors.Is(err, shared.ErrNotOwner) {
			_, err = g.forward(ctx, req)
		}
		if !errors.Is(err, shared.ErrNotOwner) || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func (g groupAdmin) Declare(ctx context.Context, d shared.Declaration) error {
	return g.change(ctx, func() error { return g.n.groups.Declare(ctx, d) },
		adminRequest{Op: "declare", Name: d.Name, Filter: d.Filter, Position: d.Start.String(), Options: d.Options})
}

func (g groupAdmin) Delete(ctx context.Context, name, filter string) error {
	return g.change(ctx, func() error { return g.n.groups.Delete(ctx, name, filter) },
		adminRequest{Op: "delete", Name: name, Filter: filter})
}

func (g groupAdmin) Seek(ctx context.Context, name, filter, stream string, p shared.Position) error {
	return g.change(ctx, func() error { return g.n.groups.Seek(ctx, name, filter, stream, p) },
		adminRequest{Op: "seek", Name: name, Filter: filter, Stream: stream, Position: p.String()})
}

// apiGroups returns the consumer groups the REST API administers.
func (n *Node) apiGroups() api.Groups {
	if n.groupPlace == nil {
		return n.groups
	}
	return groupAdmin{n: n, clusterGroups: clusterGroups{n}}
}

func (g groupAdmin) Defaults() shared.GroupOptions { return g.n.groups.Defaults() }

// forward sends req to the node running the group.
func (g groupAdmin) forward(ctx context.Context, req adminRequest) (adminAnswer, error) {
	var ans adminAnswer
	if g.n.groupPlace == nil {
		return ans, fmt.Errorf("%w: $share/%s/%s", shared.ErrNotOwner, req.Name, req.Filter)
	}
	node, _, ok := g.n.groupPlace.Dispatcher(req.Name, req.Filter)
	if !ok || node == g.n.id {
		return ans, fmt.Errorf("%w: $share/%s/%s is changing hands (a shard election); try again", shared.ErrNotOwner, req.Name, req.Filter)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return ans, err
	}
	// Bounded: rpcmux waits as long as the handler takes, and a hung
	// node would hold the request for good.
	call, cancel := context.WithTimeout(ctx, ownerWait)
	defer cancel()
	resp, err := relayTransport{g.n}.Call(call, node, groupAdminService, body)
	if err != nil {
		return ans, fmt.Errorf("%w: %s runs $share/%s/%s and did not answer: %v", shared.ErrNotOwner, node, req.Name, req.Filter, err)
	}
	if err := json.Unmarshal(resp, &ans); err != nil {
		return ans, fmt.Errorf("group administration answer from %s: %w", node, err)
	}
	if ans.Error != "" {
		if sentinel := adminSentinel(ans.Kind); sentinel != nil {
			return ans, fmt.Errorf("%w: %s", sentinel, ans.Error)
		}
		return ans, errors.New(ans.Error)
	}
	return ans, nil
}

// serveGroupAdmin runs group administration other nodes forward here.
func (n *Node) serveGroupAdmin() {
	n.repl.mux.Handle(groupAdminService, func(ctx context.Context, _ string, body []byte) ([]byte, error) {
		var req adminRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("group administration request: %w", err)
		}
		var ans adminAnswer
		var err error
		switch req.Op {
		case "group":
			var st shared.GroupStats
			if st, err = n.groups.Group(ctx, req.Name, req.Filter); err == nil {
				st.Node = n.id
				ans.Stats = &st
			}
		case "declare", "seek":
			var p shared.Position
			if p, err = shared.ParsePosition(req.Position); err != nil {
				err = fmt.Errorf("%w: %v", shared.ErrInvalidGroup, err)
			} else if req.Op == "declare" {
				err = n.groups.Declare(ctx, shared.Declaration{Name: req.Name, Filter: req.Filter, Start: p, Options: req.Options})
			} else {
				err = n.groups.Seek(ctx, req.Name, req.Filter, req.Stream, p)
			}
		case "delete":
			err = n.groups.Delete(ctx, req.Name, req.Filter)
		default:
			err = fmt.Errorf("unknown group administration op %q", req.Op)
		}
		if err != nil {
			ans.Error = err.Error()
			ans.Kind = adminKind(err)
		}
		return json.Marshal(ans)
	})
}
