package appends

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func testRequests() []*call {
	hdr := raft.RPCHeader{ProtocolVersion: 3, ID: []byte("node1"), Addr: []byte("127.0.0.1:7947")}
	return []*call{
		{id: 0, group: "shard-0", req: &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 7, Leader: []byte("127.0.0.1:7947"),
			PrevLogEntry: 41, PrevLogTerm: 6, LeaderCommitIndex: 40, Entries: []*raft.Log{
				{Index: 42, Term: 7, Type: raft.LogCommand, Data: []byte("payload"), AppendedAt: time.Unix(1700000000, 123456789)},
				{Index: 43, Term: 7, Type: raft.LogConfiguration, Data: []byte{0, 1}, Extensions: []byte("ext")},
			}}},
		// A commit index and nothing else.
		{id: 1, group: "shard-11", req: &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 1 << 40, PrevLogEntry: 43, PrevLogTerm: 7,
			LeaderCommitIndex: 43}},
		{id: 1 << 50, group: "meta", req: &raft.AppendEntriesRequest{}},
	}
}

func TestRequestsRoundTrip(t *testing.T) {
	calls := testRequests()
	got, err := decodeRequests(appendRequests(nil, calls))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(calls) {
		t.Fatalf("decoded %d requests, want %d", len(got), len(calls))
	}
	for i, c := range calls {
		want := request{id: c.id, group: c.group, req: *c.req}
		g := got[i]
		// Times compare by instant (decoding drops the monotonic reading).
		for j, e := range g.req.Entries {
			if !e.AppendedAt.Equal(want.req.Entries[j].AppendedAt) {
				t.Fatalf("request %d entry %d: appended at %v, want %v", i, j, e.AppendedAt, want.req.Entries[j].AppendedAt)
			}
			e.AppendedAt = want.req.Entries[j].AppendedAt
		}
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("request %d: decoded %+v, want %+v", i, g, want)
		}
	}
}

// TestDecodedEntriesOwnTheirBytes: a decoded request's entries do not
// alias the frame (raft's log cache keeps entries; aliasing, each would
// keep its whole frame of every group's requests in memory).
func TestDecodedEntriesOwnTheirBytes(t *testing.T) {
	frame := appendRequests(nil, testRequests())
	got, err := decodeRequests(frame)
	if err != nil {
		t.Fatal(err)
	}
	clear(frame)
	entries := got[0].req.Entries
	if string(entries[0].Data) != "payload" || string(entries[1].Data) != "\x00\x01" || string(entries[1].Extensions) != "ext" {
		t.Fatalf("entries changed with the frame: %q %q %q", entries[0].Data, entries[1].Data, entries[1].Extensions)
	}
	if entries[0].Extensions != nil {
		t.Fatalf("empty extensions decoded as %q, want nil", entries[0].Extensions)
	}
	if cap(entries[0].Data) != len(entries[0].Data) {
		t.Fatalf("an entry's data has room for %d more bytes: appending to it would overwrite the next entry's", cap(entries[0].Data)-len(entries[0].Data))
	}
}

func TestAnswersRoundTrip(t *testing.T) {
	answers := []answer{
		{id: 3, resp: raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("node2"), Addr: []byte("127.0.0.1:7957")},
			Term: 7, LastLog: 1234, Success: true}},
		{id: 4, err: "group shard-3 is not open on this node"},
		{id: 9, resp: raft.AppendEntriesResponse{Term: 9, NoRetryBackoff: true}},
	}
	got, err := decodeAnswers(appendAnswers(nil, answers))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, answers) {
		t.Fatalf("decoded %+v, want %+v", got, answers)
	}
}

func TestFrames(t *testing.T) {
	var b []byte
	for _, body := range [][]byte{appendRequests(nil, testRequests()), {}, appendAnswers(nil, nil)} {
		var at int
		b, at = beginFrame(b)
		b = append(b, body...)
		b = endFrame(b, at)
	}
	r := bytes.NewReader(b)
	for i, want := range [][]byte{appendRequests(nil, testRequests()), {}, appendAnswers(nil, nil)} {
		got, err := readFrame(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if _, err := readFrame(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff})); !errors.Is(err, errMalformed) {
		t.Fatalf("a frame over the limit: %v, want errMalformed", err)
	}
}

func TestMalformedRefused(t *testing.T) {
	reqs := appendRequests(nil, testRequests())
	answers := appendAnswers(nil, []answer{{id: 1, resp: raft.AppendEntriesResponse{Term: 1, Success: true}}})
	cases := map[string]func() error{
		"empty frame":       func() error { _, err := decodeRequests(nil); return err },
		"other version":     func() error { _, err := decodeRequests(append([]byte{9}, reqs[1:]...)); return err },
		"trailing bytes":    func() error { _, err := decodeRequests(append(append([]byte(nil), reqs...), 0)); return err },
		"huge count":        func() error { _, err := decodeRequests([]byte{wireVersion, 0xff, 0xff, 0xff, 0x7f}); return err },
		"bad answer status": func() error { _, err := decodeAnswers([]byte{wireVersion, 1, 0, 7}); return err },
		"answers, trailing": func() error { _, err := decodeAnswers(append(append([]byte(nil), answers...), 1)); return err },
		"huge entry count": func() error {
			b := []byte{wireVersion, 1, 0, 1, 'g', 0, 0, 0, 1, 0, 0, 0, 0}
			b = append(b, 0xff, 0xff, 0x03)
			_, err := decodeRequests(b)
			return err
		},
		"string past the end": func() error {
			_, err := decodeRequests([]byte{wireVersion, 1, 0, 50, 'g'})
			return err
		},
	}
	for i := 1; i < len(reqs); i++ {
		cases[fmt.Sprintf("requests cut at %d", i)] = func() error { _, err := decodeRequests(reqs[:i]); return err }
	}
	for i := 1; i < len(answers); i++ {
		cases[fmt.Sprintf("answers cut at %d", i)] = func() error { _, err := decodeAnswers(answers[:i]); return err }
	}
	for name, decode := range cases {
		if err := decode(); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v, want errMalformed", name, err)
		}
	}
}

// FuzzDecode: whatever a peer sends, decoding returns requests or answers
// or an error, never panics, and what decodes encodes back to the same.
func FuzzDecode(f *testing.F) {
	f.Add(appendRequests(nil, testRequests()))
	f.Add(appendAnswers(nil, []answer{{id: 1, err: "x"}, {id: 2, resp: raft.AppendEntriesResponse{Term: 2}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if reqs, err := decodeRequests(b); err == nil {
			calls := make([]*call, len(reqs))
			for i := range reqs {
				calls[i] = &call{id: reqs[i].id, group: reqs[i].group, req: &reqs[i].req}
			}
			again, err := decodeRequests(appendRequests(nil, calls))
			if err != nil || len(again) != len(reqs) {
				t.Fatalf("requests do not round-trip: %v", err)
			}
			for i := range again {
				if !reflect.DeepEqual(appendRequest(nil, &again[i].req), appendRequest(nil, &reqs[i].req)) {
					t.Fatalf("request %d differs after a round trip", i)
				}
			}
		}
		if answers, err := decodeAnswers(b); err == nil {
			if again, err := decodeAnswers(appendAnswers(nil, answers)); err != nil || !reflect.DeepEqual(again, answers) {
				t.Fatalf("answers do not round-trip: %v", err)
			}
		}
	})
}

// TestFrameLengthAloneAllocatesLittle: a frame header claiming the
// largest body, from a peer that then sends nothing more, makes
// readFrame allocate about a step, not the 128 MiB it claims.
func TestFrameLengthAloneAllocatesLittle(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, maxFrame)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readFrame(bytes.NewReader(append(hdr, "only this"...)))
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a truncated frame was read")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Fatalf("allocated %d bytes for a frame that sent 9", grew)
	}
}
