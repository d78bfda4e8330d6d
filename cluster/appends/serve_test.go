package appends

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestStaleTickDoesNotTimeAnAppendOut: the serving ticker keeps one tick
// while the transport is idle. An append handed over after that must not
// count it, and time out at the next tick: two ticks that come well
// within AnswerTimeout/2 of the hand-over leave it waiting for raft's
// answer.
func TestStaleTickDoesNotTimeAnAppendOut(t *testing.T) {
	tr := &Transport{b: &Batcher{opts: Options{AnswerTimeout: time.Hour}}, group: "g",
		rpcs: make(chan raft.RPC), closed: make(chan struct{})}
	conn := &serverConn{wake: make(chan struct{}, 1), done: make(chan struct{})}
	tick := make(chan time.Time)
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		tr.handle(incoming{id: 7, req: &raft.AppendEntriesRequest{Term: 3}, to: conn}, tick)
	}()
	rpc := <-tr.rpcs
	tick <- time.Now().Add(-time.Minute) // the tick kept while idle
	tick <- time.Now()                   // the next one
	select {
	case <-handled:
		t.Fatalf("answered before raft did: %+v", conn.answers)
	default:
	}
	rpc.Respond(&raft.AppendEntriesResponse{Term: 3, Success: true}, nil)
	<-handled
	if len(conn.answers) != 1 || conn.answers[0].err != "" || !conn.answers[0].resp.Success {
		t.Fatalf("answers %+v, want raft's success", conn.answers)
	}
}
