package appends

import (
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Splitting large requests.
//
// Raft puts up to MaxAppendEntries entries in one AppendEntries whatever
// their size, and an entry may be as large as the largest append a node
// takes (a REST write's body, megabytes). A follower far behind would
// then be sent requests larger than a frame may be (maxFrame), fail every
// time, and never catch up. So a request larger than maxRequestBytes goes
// out as consecutive requests of fewer entries (split), queued together
// on the link, which keeps their order to the follower; the answer is
// the first part's that failed, or the last part's.

// maxRequestBytes bounds one request on the wire (call.size), unless its
// first entry alone is larger: a node takes no append that large
// (cluster/shards refuses appends beyond 32 MiB, far below maxFrame).
const maxRequestBytes = 32 << 20

// split returns req as consecutive requests of at most maxRequestBytes
// each, or req alone when it is no larger. Each part but the first
// follows the previous part's last entry; each part but the last carries
// a commit index no further than its own last entry, so that a follower
// holding stale entries past a part never takes them for committed.
func split(group string, req *raft.AppendEntriesRequest) []*raft.AppendEntriesRequest {
	if (&call{group: group, req: req}).size() <= maxRequestBytes {
		return []*raft.AppendEntriesRequest{req}
	}
	var parts []*raft.AppendEntriesRequest
	entries := req.Entries
	prevIndex, prevTerm := req.PrevLogEntry, req.PrevLogTerm
	for len(entries) > 0 {
		part := *req
		part.PrevLogEntry, part.PrevLogTerm, part.Entries = prevIndex, prevTerm, nil
		n, size := 0, (&call{group: group, req: &part}).size()
		for n < len(entries) && (n == 0 || size+entrySize(entries[n]) <= maxRequestBytes) {
			size += entrySize(entries[n])
			n++
		}
		part.Entries = entries[:n:n]
		entries = entries[n:]
		last := part.Entries[n-1]
		if len(entries) > 0 {
			part.LeaderCommitIndex = min(part.LeaderCommitIndex, last.Index)
		}
		prevIndex, prevTerm = last.Index, last.Term
		parts = append(parts, &part)
	}
	return parts
}

// entrySize is an entry's share of call.size.
func entrySize(e *raft.Log) int { return 32 + len(e.Data) + len(e.Extensions) }

// multiCall is a request split into parts (split), sent as one call each
// and settled together: done gets the first error, else the first
// unsuccessful answer, else the last part's answer.
type multiCall struct {
	calls []*call
	errs  []error
	left  atomic.Int32 // parts not settled yet
	done  func(resp raft.AppendEntriesResponse, err error)
	one   [1]*call // calls' array for a request sent whole
}

// newMultiCall returns the calls of req's parts for group.
func newMultiCall(group string, req *raft.AppendEntriesRequest, done func(raft.AppendEntriesResponse, error)) *multiCall {
	m := &multiCall{done: done}
	if c := (&call{group: group, req: req}); c.size() <= maxRequestBytes {
		// The usual case: no parts to gather.
		c.done = func(c *call, err error) { m.done(c.resp, err) }
		m.one[0] = c
		m.calls = m.one[:]
		return m
	}
	reqs := split(group, req)
	m.calls, m.errs = make([]*call, len(reqs)), make([]error, len(reqs))
	m.left.Store(int32(len(reqs)))
	for i, r := range reqs {
		m.calls[i] = &call{group: group, req: r, done: func(_ *call, err error) {
			m.errs[i] = err
			if m.left.Add(-1) == 0 {
				m.done(m.result())
			}
		}}
	}
	return m
}

// result combines the parts' outcomes, all settled.
func (m *multiCall) result() (raft.AppendEntriesResponse, error) {
	for i, c := range m.calls {
		if m.errs[i] != nil {
			return raft.AppendEntriesResponse{}, m.errs[i]
		}
		if !c.resp.Success || i == len(m.calls)-1 {
			return c.resp, nil
		}
	}
	return raft.AppendEntriesResponse{}, nil // no parts: split returns one at least
}

// send queues the parts on l together; false when l takes no more (then
// none is queued, and the caller fails them, with no lock held: fail).
func (m *multiCall) send(l *link) bool { return l.enqueueAll(m.calls) }

// fail settles every part with err.
func (m *multiCall) fail(err error) {
	for _, c := range m.calls {
		c.done(c, err)
	}
}
