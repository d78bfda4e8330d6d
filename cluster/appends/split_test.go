package appends

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestSplitKeepsSmallRequestsWhole(t *testing.T) {
	req := &raft.AppendEntriesRequest{PrevLogEntry: 4, PrevLogTerm: 1, LeaderCommitIndex: 6,
		Entries: []*raft.Log{{Index: 5, Term: 2, Data: []byte("a")}, {Index: 6, Term: 2, Data: []byte("b")}}}
	if parts := split("g", req); len(parts) != 1 || parts[0] != req {
		t.Fatalf("a small request was split: %d parts", len(parts))
	}
}

// TestSplitChainsItsParts: a request past maxRequestBytes becomes parts
// that each follow the previous one's last entry, none past the limit
// (but a single entry larger than it), and only the last carries a
// commit index past its own entries.
func TestSplitChainsItsParts(t *testing.T) {
	big := make([]byte, maxRequestBytes/3)
	huge := make([]byte, maxRequestBytes+1)
	req := &raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 9, PrevLogTerm: 2, LeaderCommitIndex: 20}
	for i, data := range [][]byte{big, big, big, huge, big, []byte("x")} {
		req.Entries = append(req.Entries, &raft.Log{Index: uint64(10 + i), Term: 3, Data: data})
	}
	parts := split("g", req)
	var got []uint64
	prev, prevTerm := req.PrevLogEntry, req.PrevLogTerm
	for i, p := range parts {
		if p.PrevLogEntry != prev || p.PrevLogTerm != prevTerm {
			t.Fatalf("part %d follows %d/%d, want %d/%d", i, p.PrevLogEntry, p.PrevLogTerm, prev, prevTerm)
		}
		if size := (&call{group: "g", req: p}).size(); size > maxRequestBytes && len(p.Entries) > 1 {
			t.Fatalf("part %d: %d entries, %d bytes", i, len(p.Entries), size)
		}
		last := p.Entries[len(p.Entries)-1]
		wantCommit := min(req.LeaderCommitIndex, last.Index)
		if i == len(parts)-1 {
			wantCommit = req.LeaderCommitIndex
		}
		if p.LeaderCommitIndex != wantCommit || p.Term != req.Term {
			t.Fatalf("part %d: commit %d term %d, want %d and %d", i, p.LeaderCommitIndex, p.Term, wantCommit, req.Term)
		}
		for _, e := range p.Entries {
			got = append(got, e.Index)
		}
		prev, prevTerm = last.Index, last.Term
	}
	if len(parts) != 4 || len(got) != 6 || got[0] != 10 || got[5] != 15 {
		t.Fatalf("%d parts with entries %v; want 4 parts: [10 11] [12] [13] [14 15]", len(parts), got)
	}
}

// TestMultiCallAnswers: the first failure decides the answer; otherwise
// the last part's does.
func TestMultiCallAnswers(t *testing.T) {
	big := make([]byte, maxRequestBytes-100)
	req := &raft.AppendEntriesRequest{Entries: []*raft.Log{{Index: 1, Data: big}, {Index: 2, Data: big}, {Index: 3, Data: big}}}
	for _, tc := range []struct {
		name    string
		success []bool
		want    uint64 // the LastLog of the answer
	}{
		{"all succeed", []bool{true, true, true}, 3},
		{"the second fails", []bool{true, false, false}, 2},
	} {
		var got raft.AppendEntriesResponse
		m := newMultiCall("g", req, func(resp raft.AppendEntriesResponse, err error) { got = resp })
		if len(m.calls) != 3 {
			t.Fatalf("%d parts", len(m.calls))
		}
		for i, c := range m.calls {
			c.resp = raft.AppendEntriesResponse{Success: tc.success[i], LastLog: uint64(i + 1)}
			c.done(c, nil)
		}
		if got.LastLog != tc.want {
			t.Errorf("%s: answer of part %d, want %d", tc.name, got.LastLog, tc.want)
		}
	}
}

// TestRaftFollowerCatchesUpOverLargeEntries: a replica added to a
// group whose log holds more than a frame's worth of large entries (raft
// sends up to 64 in one request) catches up; before requests were split,
// every request to it was refused as too large, and it never did.
func TestRaftFollowerCatchesUpOverLargeEntries(t *testing.T) {
	c := startRaftCluster(t, nil, 3, 1)
	g := c.groups[0]
	l := c.leader(g)
	f := otherNodes(c.nodes, l)[0]
	if err := l.rafts[g].RemoveServer(raft.ServerID(f.id), 0, 0).Error(); err != nil {
		t.Fatal(err)
	}
	c.stop(f, g)
	f.logs[g] = raft.NewInmemStore() // back as a new, empty replica
	c.start(f, g)
	entry := bytes.Repeat([]byte("x"), maxFrame/40) // 64 of them exceed a frame
	for range 66 {
		if err := l.rafts[g].Apply(entry, 10*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.rafts[g].AddVoter(raft.ServerID(f.id), f.addr(), 0, 0).Error(); err != nil {
		t.Fatal(err)
	}
	c.applied(g, 66, f)
}
