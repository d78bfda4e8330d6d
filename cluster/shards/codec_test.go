package shards

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/streams"
)

func TestEntryRoundTripAndCorruption(t *testing.T) {
	ts := time.Unix(1_700_000_000, 42)
	cmds := []appendCmd{
		{kind: kindAppend, stream: "a", records: encodeRecords(recs("x", 3))},
		{kind: kindAppend, stream: "b", noSync: true, records: encodeRecords([]streams.Record{{Topic: "t", Payload: nil}})},
		{kind: kindCreate, stream: "c", retention: streams.Retention{MaxAge: time.Hour, MaxBytes: 1 << 30, MaxRecords: 5}},
		{kind: kindDelete, stream: "d"},
	}
	b := encodeEntry(ts, cmds)
	gotTS, got, err := decodeEntry(b)
	if err != nil || !gotTS.Equal(ts) || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("round trip: %v %v %+v", err, gotTS, got)
	}
	r, err := streams.DecodeRecord(got[0].records[1], 7)
	if err != nil || string(r.Payload) != "x-1" || r.Offset != 7 || r.ClientID != "c1" {
		t.Fatalf("record: %+v %v", r, err)
	}
	for cut := 0; cut < len(b); cut++ {
		if _, _, err := decodeEntry(b[:cut]); !errors.Is(err, ErrBadEntry) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	if _, _, err := decodeEntry(append(b, 0)); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("trailing byte: %v", err)
	}
	bad := append([]byte{9}, b[1:]...)
	if _, _, err := decodeEntry(bad); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("unknown version: %v", err)
	}
}

func TestForwardRoundTrip(t *testing.T) {
	cmds := []appendCmd{{kind: kindAppend, stream: "s", records: encodeRecords(recs("f", 2)), id: appendID{17, 7}},
		{kind: kindAppend, stream: "t", records: encodeRecords(recs("g", 1))}}
	shard, hops, got, err := decodeForward(encodeForward(11, 1, cmds))
	if err != nil || shard != 11 || hops != 1 || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("forward: %d %d %+v %v", shard, hops, got, err)
	}
	res, err := decodeForwardResults(encodeForwardResults([]appendResult{{first: 5}, {err: streams.ErrRecordTooLarge}}), 2)
	if err != nil || res[0].first != 5 || !errors.Is(res[1].err, streams.ErrRecordTooLarge) {
		t.Fatalf("results: %+v %v", res, err)
	}
	if _, err := decodeForwardResults(encodeForwardResults([]appendResult{{first: 5}}), 2); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("result count mismatch: %v", err)
	}
	if first, err := decodeForwardResult(encodeForwardResult(99, nil)); err != nil || first != 99 {
		t.Fatalf("ok result: %d %v", first, err)
	}
	for _, sentinel := range []error{streams.ErrRecordTooLarge, streams.ErrStreamNotFound, streams.ErrInvalidName, streams.ErrUnavailable, ErrNoLeader, streams.ErrStreamExists} {
		_, err := decodeForwardResult(encodeForwardResult(0, fmt.Errorf("wrapped: %w", sentinel)))
		if !errors.Is(err, sentinel) {
			t.Fatalf("%v came back as %v", sentinel, err)
		}
	}
	// Forwarded on by a replica that is not the leader: the leader is
	// named once.
	twice, err := decodeForwardResult(encodeForwardResult(0, func() error {
		_, err := decodeForwardResult(encodeForwardResult(0, fmt.Errorf("%w: \"beta\"", streams.ErrStreamExists)))
		return err
	}()))
	if want := `stream already exists: "beta" (from the shard's leader)`; twice != 0 || !errors.Is(err, streams.ErrStreamExists) || err.Error() != want {
		t.Fatalf("an answer forwarded twice: %q, want %q", err, want)
	}
	if _, err := decodeForwardResult(encodeForwardResult(0, fmt.Errorf("%w: %w", ErrNoLeader, errNotProposed))); !errors.Is(err, errNotProposed) || !errors.Is(err, ErrNoLeader) {
		t.Fatalf("a not-proposed answer came back as %v", err)
	}
	// A leader that was closing, or that lost its leadership with the
	// append in flight: sent again by forwardBatch (deduplicated by the
	// appends' ids); not a "not proposed" answer, which others may send
	// again without deduplication.
	for _, unknown := range []error{streams.ErrClosed, raftError(raft.ErrLeadershipLost)} {
		if _, err := decodeForwardResult(encodeForwardResult(0, unknown)); !errors.Is(err, errOutcomeUnknown) || !errors.Is(err, ErrNoLeader) ||
			errors.Is(err, errNotProposed) {
			t.Fatalf("%v came back as %v", unknown, err)
		}
	}
	if _, err := decodeForwardResult(nil); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("empty answer: %v", err)
	}
	if _, _, _, err := decodeForward([]byte{1, 2}); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("short forward: %v", err)
	}
}

// TestRequestsNamingAShardBeyondAnIntAreRefused: a shard index above
// MaxInt64 was an int below zero, past the handlers' "shard >= Shards"
// check, and indexing the outboxes with it killed the node.
func TestRequestsNamingAShardBeyondAnIntAreRefused(t *testing.T) {
	huge := func(version byte) []byte { return binary.AppendUvarint([]byte{version}, 1<<63) }
	fwd := append(huge(entryVersion1), 0, 1)
	fwd = appendCmdTo(fwd, appendCmd{kind: kindAppend, stream: "s", records: encodeRecords(recs("x", 1)), id: appendID{7, 1}})
	if _, _, _, err := decodeForward(fwd); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("forward: %v", err)
	}
	if _, _, err := decodeMembersRequest(binary.AppendUvarint(huge(membersVersion1), 0)); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("membership check: %v", err)
	}
	if _, err := decodeFetchRequest(append(huge(fetchVersion1), 0, 0, 0, 0, 0)); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("fetch: %v", err)
	}
	s := &Set{opts: Options{Shards: 1}}
	if _, err := s.HandleForward(context.Background(), "", fwd); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("HandleForward: %v", err)
	}
}

func TestPlanSpreadsReplicasAndLeaders(t *testing.T) {
	peers := []Peer{{ID: "c", RPC: "c:1"}, {ID: "a", RPC: "a:1"}, {ID: "b", RPC: "b:1"}}
	l, err := Plan(peers, 12, 3)
	if err != nil {
		t.Fatal(err)
	}
	led, held := map[string]int{}, map[string]int{}
	for i, ps := range l.Shards {
		if len(ps) != 3 {
			t.Fatalf("shard %d has %d replicas", i, len(ps))
		}
		led[ps[0].ID]++
		for _, p := range ps {
			held[p.ID]++
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if led[id] != 4 || held[id] != 12 {
			t.Fatalf("node %s leads %d holds %d, want 4 and 12", id, led[id], held[id])
		}
	}
	again, _ := Plan([]Peer{peers[2], peers[0], peers[1]}, 12, 3)
	if !reflect.DeepEqual(l, again) {
		t.Fatal("the layout depends on the members' order")
	}
	b, _ := l.Marshal()
	if back, err := UnmarshalLayout(b); err != nil || !reflect.DeepEqual(back, l) {
		t.Fatalf("layout round trip: %v", err)
	}
	if l2, _ := Plan(peers[:2], 4, 3); len(l2.Shards[0]) != 2 {
		t.Fatalf("two members, factor 3: %d replicas", len(l2.Shards[0]))
	}
	if _, err := Plan(append(peers, Peer{ID: "a"}), 4, 3); err == nil {
		t.Fatal("duplicate member accepted")
	}
	if _, err := Plan(nil, 4, 3); err == nil {
		t.Fatal("no members accepted")
	}
}

func TestShardOfIsStableAndSpreads(t *testing.T) {
	if ShardOf("sensors", 12) != ShardOf("sensors", 12) {
		t.Fatal("unstable")
	}
	seen := map[int]bool{}
	for i := 0; i < 200; i++ {
		seen[ShardOf(fmt.Sprintf("stream-%d", i), 12)] = true
	}
	if len(seen) != 12 {
		t.Fatalf("200 streams hit %d of 12 shards", len(seen))
	}
}

func TestLogLimitHoldsBackRepeats(t *testing.T) {
	l := NewLogLimit()
	now := time.Unix(100, 0)
	if ok, _ := l.allow("a", now); !ok {
		t.Fatal("first line held back")
	}
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a", now.Add(time.Second)); ok {
			t.Fatal("repeat passed within the limit")
		}
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another message held back")
	}
	if ok, held := l.allow("a", now.Add(limitEvery+time.Second)); !ok || held != 3 {
		t.Fatalf("after the limit: %v, %d held", ok, held)
	}
}

// TestRaftLoggerLimitsPerGroup: the limit holds back a group's repeats,
// not another group's line with the same message.
func TestRaftLoggerLimitsPerGroup(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	limit := NewLogLimit()
	a, b := RaftLogger(log, "shard-0", limit), RaftLogger(log, "shard-1", limit)
	a.Warn("failed to appendEntries to", "peer", "x")
	a.Warn("failed to appendEntries to", "peer", "x") // held back
	b.Warn("failed to appendEntries to", "peer", "x")
	out := buf.String()
	if n := strings.Count(out, "failed to appendEntries to"); n != 2 ||
		!strings.Contains(out, "group=shard-0") || !strings.Contains(out, "group=shard-1") {
		t.Fatalf("%d lines:\n%s", n, out)
	}
}

// TestKVEntryEncoding: an entry with key/value writes is of version 2 and
// round-trips; one without is of version 1 as before; key/value writes
// in an entry of version 1, with an unknown flag, or in a forward, are
// refused.
func TestKVEntryEncoding(t *testing.T) {
	ts := time.Unix(1_700_000_000, 0)
	appends := []appendCmd{{kind: kindAppend, stream: "a", records: encodeRecords(recs("x", 1))}}
	if b := encodeEntry(ts, appends); b[0] != entryVersion1 {
		t.Fatalf("an entry of appends is of version %d", b[0])
	}
	cmds := append(appends, appendCmd{kind: kindKV, term: 7, kv: []streams.KVWrite{
		{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("e"), Value: []byte{}},
		{Key: []byte("d"), Delete: true}, {Key: []byte("p/"), DeletePrefix: true}}})
	b := encodeEntry(ts, cmds)
	if b[0] != entryVersion2 {
		t.Fatalf("an entry with key/value writes is of version %d", b[0])
	}
	_, got, err := decodeEntry(b)
	if err != nil || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, got, cmds)
	}
	for cut := 0; cut < len(b); cut++ {
		if _, _, err := decodeEntry(b[:cut]); !errors.Is(err, ErrBadEntry) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	v1 := append([]byte{entryVersion1}, b[1:]...)
	if _, _, err := decodeEntry(v1); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("key/value writes in version 1: %v", err)
	}
	one := encodeEntry(time.Unix(0, 0), []appendCmd{{kind: kindKV, term: 1, kv: []streams.KVWrite{{Key: []byte("k"), Value: []byte("v")}}}})
	// A byte each: version, ts, count, kind, stream, term, writes; then
	// the first write's flag.
	const flag = 7
	if one[flag] != kvPut {
		t.Fatalf("the layout of the encoding moved: % x", one)
	}
	one[flag] = 9
	if _, _, err := decodeEntry(one); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("unknown flag: %v", err)
	}
	if _, _, _, err := decodeForward(encodeForward(0, 0, cmds)); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("key/value writes in a forward: %v", err)
	}
}

// FuzzDecodeEntry: decoding arbitrary bytes fails cleanly or yields
// commands that encode back to an entry decoding the same.
func FuzzDecodeEntry(f *testing.F) {
	ts := time.Unix(1_700_000_000, 0)
	f.Add(encodeEntry(ts, []appendCmd{{kind: kindAppend, stream: "a", records: encodeRecords(recs("x", 2))}}))
	f.Add(encodeEntry(ts, []appendCmd{{kind: kindCreate, stream: "c"}, {kind: kindDelete, stream: "d"}}))
	f.Add(encodeEntry(ts, []appendCmd{{kind: kindKV, term: 3, kv: []streams.KVWrite{{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("p"), DeletePrefix: true}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		gotTS, cmds, err := decodeEntry(b)
		if err != nil {
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("error not ErrBadEntry: %v", err)
			}
			return
		}
		ts2, again, err := decodeEntry(encodeEntry(gotTS, cmds))
		if err != nil || !ts2.Equal(gotTS) || len(again) != len(cmds) {
			t.Fatalf("re-encoding: %v", err)
		}
		for i := range cmds {
			if fmt.Sprint(again[i]) != fmt.Sprint(cmds[i]) {
				t.Fatalf("command %d: %+v, then %+v", i, cmds[i], again[i])
			}
		}
	})
}
