package node

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
)

// TestCrashLoop SIGKILLs the server five times during mixed QoS 1 publishing
// and $share consumption. After every kill: every acknowledged publish is
// stored, offsets are dense, and the group's persisted progress never goes
// back (the floor never drops, nothing once done becomes undone).
func TestCrashLoop(t *testing.T) {
	dir := t.TempDir()
	acked := map[string]bool{}
	var prev map[string]shared.Progress
	for round := 0; round < 5; round++ {
		cmd, addr, lines := startChildLines(t, dir)
		var wg sync.WaitGroup
		stopConsumers := make(chan struct{})
		for i := 0; i < 2; i++ {
			o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("w%d-%d", round, i)).
				SetAutoReconnect(false).SetWriteTimeout(500 * time.Millisecond)
			c := paho3.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			if tok := c.Subscribe("$share/g/crash/#", 1, func(paho3.Client, paho3.Message) {}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			wg.Add(1)
			go func() { defer wg.Done(); <-stopConsumers; c.Disconnect(0) }()
		}
		stop := make(chan struct{})
		done := make(chan map[string]bool)
		tag := fmt.Sprintf("r%d-", round)
		go func() { done <- publishTagged(t, addr, tag, 2, 32, stop) }()
		// Let load run until some group progress is durable, then kill.
		deadline := time.After(10 * time.Second)
		for persisted := 0; persisted < 3; {
			select {
			case l := <-lines:
				if len(l) > 9 && l[:9] == "PERSISTED" {
					persisted++
				}
			case <-deadline:
				t.Fatalf("round %d: no group progress persisted", round)
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		close(stop)
		got := <-done
		for p := range got {
			acked[p] = true
		}
		t.Logf("round %d: %d publishes acknowledged", round, len(got))
		close(stopConsumers)
		wg.Wait()

		s, err := streams.Open(streams.Options{Dir: dir, Logger: testutil.Logger()})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		stored := map[string]bool{}
		var next uint64
		err = s.Scan(t.Context(), "crash", 0, 0, func(r streams.Record) (bool, error) {
			if r.Offset != next {
				return false, fmt.Errorf("offset %d, want %d", r.Offset, next)
			}
			next++
			stored[string(r.Payload)] = true
			return true, nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for p := range acked {
			if !stored[p] {
				t.Fatalf("round %d: acknowledged %s lost", round, p)
			}
		}
		progress, err := shared.StoredProgress(s.KV("groups"), "g", "crash/#")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for stream, p := range prev {
			now := progress[stream]
			if now.AckFloor < p.AckFloor {
				t.Fatalf("round %d: %s ack floor went back from %d to %d", round, stream, p.AckFloor, now.AckFloor)
			}
			doneNow := map[uint64]bool{}
			for _, o := range now.DoneAbove {
				doneNow[o] = true
			}
			for _, o := range p.DoneAbove {
				if o >= now.AckFloor && !doneNow[o] {
					t.Fatalf("round %d: %s offset %d was done and is not any more", round, stream, o)
				}
			}
		}
		t.Logf("round %d: %d acked publishes stored, group floor %v", round, len(acked), progress["crash"].AckFloor)
		prev = progress
		s.Close()
	}
	if prev["crash"].AckFloor == 0 {
		t.Fatal("the group made no durable progress")
	}
}
