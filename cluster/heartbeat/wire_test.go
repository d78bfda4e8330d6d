package heartbeat

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

func TestBatchRoundTrip(t *testing.T) {
	items := []item{
		{group: "shard-0", req: raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("node1"), Addr: []byte("127.0.0.1:7947")},
			Term: 7, Leader: []byte("127.0.0.1:7947")}},
		{group: "shard-11", req: raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("node1"), Addr: []byte("127.0.0.1:7947")},
			Term: 1 << 40}},
	}
	got, err := decodeBatch(appendBatch(nil, items))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, items) {
		t.Fatalf("decoded %+v, want %+v", got, items)
	}
}

func TestAnswersRoundTrip(t *testing.T) {
	answers := []answer{
		{resp: raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("node2"), Addr: []byte("127.0.0.1:7957")},
			Term: 7, LastLog: 1234, Success: true}},
		{err: "group shard-3 is not open on this node"},
		{resp: raft.AppendEntriesResponse{Term: 9, NoRetryBackoff: true}},
	}
	got, err := decodeAnswers(appendAnswers(nil, answers))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, answers) {
		t.Fatalf("decoded %+v, want %+v", got, answers)
	}
}

func TestEmptyBatch(t *testing.T) {
	items, err := decodeBatch(appendBatch(nil, nil))
	if err != nil || len(items) != 0 {
		t.Fatalf("decoded %v, %v; want no items", items, err)
	}
}

func TestMalformedRefused(t *testing.T) {
	batch := appendBatch(nil, []item{{group: "g", req: raft.AppendEntriesRequest{Term: 1, Leader: []byte("a")}}})
	answers := appendAnswers(nil, []answer{{resp: raft.AppendEntriesResponse{Term: 1, Success: true}}})
	cases := map[string]func() error{
		"empty batch frame": func() error { _, err := decodeBatch(nil); return err },
		"other version":     func() error { _, err := decodeBatch(append([]byte{9}, batch[1:]...)); return err },
		"trailing bytes":    func() error { _, err := decodeBatch(append(append([]byte(nil), batch...), 0)); return err },
		"huge count":        func() error { _, err := decodeBatch([]byte{wireVersion, 0xff, 0xff, 0xff, 0x7f}); return err },
		"bad answer status": func() error { _, err := decodeAnswers([]byte{wireVersion, 1, 7}); return err },
		"answers, trailing": func() error { _, err := decodeAnswers(append(append([]byte(nil), answers...), 1)); return err },
		"string past the end": func() error {
			_, err := decodeBatch([]byte{wireVersion, 1, 50, 'g'})
			return err
		},
	}
	for i := 1; i < len(batch); i++ {
		cases[fmt.Sprintf("batch cut at %d", i)] = func() error { _, err := decodeBatch(batch[:i]); return err }
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

func FuzzDecode(f *testing.F) {
	f.Add(appendBatch(nil, []item{{group: "g", req: raft.AppendEntriesRequest{Term: 1, Leader: []byte("a")}}}))
	f.Add(appendAnswers(nil, []answer{{err: "x"}, {resp: raft.AppendEntriesResponse{Term: 2}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if items, err := decodeBatch(b); err == nil {
			if again, err := decodeBatch(appendBatch(nil, items)); err != nil || !reflect.DeepEqual(again, items) {
				t.Fatalf("batch does not round-trip: %v", err)
			}
		}
		if answers, err := decodeAnswers(b); err == nil {
			if _, err := decodeAnswers(appendAnswers(nil, answers)); err != nil {
				t.Fatalf("answers do not round-trip: %v", err)
			}
		}
	})
}
