package node

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mqstream/mqstream/internal/testutil"
)

type member struct {
	c     paho3.Client
	mu    sync.Mutex
	got   []string
	noAck bool
}

func joinGroup(t *testing.T, addr, id string, noAck bool) *member {
	t.Helper()
	m := &member{noAck: noAck}
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false).
		SetAutoAckDisabled(true).SetWriteTimeout(time.Second)
	o.SetDefaultPublishHandler(func(_ paho3.Client, msg paho3.Message) {
		m.mu.Lock()
		m.got = append(m.got, string(msg.Payload()))
		m.mu.Unlock()
		if !noAck {
			msg.Ack()
		}
	})
	m.c = paho3.NewClient(o)
	if tok := m.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := m.c.Subscribe("$share/g/jobs/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { m.c.Disconnect(0) })
	return m
}

func (m *member) received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got...)
}

func publishN(t *testing.T, addr string, from, n int) {
	t.Helper()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("p%d", from)))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	for i := from; i < from+n; i++ {
		if tok := c.Publish("jobs/a", 1, false, fmt.Sprintf("job-%d", i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
}

// TestGroupProgressSurvivesSIGKILL: records acknowledged above an
// unacknowledged one are not delivered again after the server is killed
// and restarted; only the unacknowledged ones come back.
func TestGroupProgressSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cmd, addr, lines := startChildLines(t, dir)
	holder := joinGroup(t, addr, "holder", true)
	publishN(t, addr, 0, 1)
	testutil.Eventually(t, 10*time.Second, "holder has the first record", func() bool { return len(holder.received()) == 1 })
	acker := joinGroup(t, addr, "acker", false)
	publishN(t, addr, 1, 30)
	testutil.Eventually(t, 10*time.Second, "all delivered", func() bool { return len(holder.received())+len(acker.received()) == 31 })
	want := int64(len(acker.received()))
	// Wait until the child reports durable progress including every ack.
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("child exited")
			}
			var acked int64
			if _, err := fmt.Sscanf(l, "PERSISTED g jobs/# %d", &acked); err == nil && acked == want {
				done = true
			}
		case <-deadline:
			t.Fatalf("progress with %d acks never became durable", want)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	_, addr, _ = startChildLines(t, dir)
	again := joinGroup(t, addr, "again", false)
	unacked := holder.received()
	testutil.Eventually(t, 10*time.Second, "unacked records redelivered", func() bool { return len(again.received()) >= len(unacked) })
	time.Sleep(200 * time.Millisecond) // nothing acknowledged may come back
	got := again.received()
	sort.Strings(got)
	sort.Strings(unacked)
	if strings.Join(got, ",") != strings.Join(unacked, ",") {
		t.Fatalf("after SIGKILL got %v, want only the unacknowledged %v", got, unacked)
	}
}
