package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestDiskFaultRefusesPublishesAndRecovers: while the store's disk fails
// writes, MQTT 5 publishers get failure acks (never success), /readyz says
// 503 and reads keep working; when the disk works again the node recovers by
// itself, and every acknowledged message is stored.
func TestDiskFaultRefusesPublishesAndRecovers(t *testing.T) {
	mem := vfs.NewMem()
	faults := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") || strings.HasSuffix(op.Path, "probe.tmp") {
			switch op.Kind {
			case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpCreate:
				return errorfs.ErrInjected
			}
		}
		return nil
	})}
	cfg := testConfig("/data")
	n, err := Open(cfg, testutil.Logger(), WithFS(errorfs.Wrap(mem, faults)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())

	conn, err := net.Dial("tcp", n.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: "p", Conn: conn})
	ctx := context.Background()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "p", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	var mu sync.Mutex
	acked := map[string]bool{}
	publish := func(prefix string, count int) (ok, refused int) {
		for i := 0; i < count; i++ {
			p := fmt.Sprintf("%s-%d", prefix, i)
			res, err := c.Publish(ctx, &paho.Publish{Topic: "faulty/x", QoS: 1, Payload: []byte(p)})
			switch {
			case err == nil && res.ReasonCode == 0:
				mu.Lock()
				acked[p] = true
				mu.Unlock()
				ok++
			case res != nil && res.ReasonCode >= 0x80:
				refused++
			default:
				t.Fatalf("publish %s: %v %+v", p, err, res)
			}
		}
		return ok, refused
	}
	ready := func() int {
		resp, err := http.Get("http://" + n.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if ok, _ := publish("before", 20); ok != 20 {
		t.Fatalf("%d of 20 acked before the fault", ok)
	}
	faults.On()
	if ok, refused := publish("during", 10); ok != 0 || refused != 10 {
		t.Fatalf("during the fault: %d acked, %d refused", ok, refused)
	}
	if code := ready(); code != 503 {
		t.Fatalf("/readyz %d during the fault", code)
	}
	if recs, err := n.Store().Read("faulty", 0, streams.ReadOptions{}); err != nil || len(recs) != 20 {
		t.Fatalf("read during the fault: %d %v", len(recs), err)
	}
	faults.Off()
	deadline := time.Now().Add(10 * time.Second)
	for ready() != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("node did not recover: %v", n.Store().Healthy())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, _ := publish("after", 20); ok != 20 {
		t.Fatalf("%d of 20 acked after recovery", ok)
	}
	recs, err := n.Store().Read("faulty", 0, streams.ReadOptions{MaxRecords: 1000})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for i, r := range recs {
		if r.Offset != uint64(i) {
			t.Fatalf("offsets not dense: %d at %d", r.Offset, i)
		}
		stored[string(r.Payload)] = true
	}
	for p := range acked {
		if !stored[p] {
			t.Fatalf("acknowledged %s lost", p)
		}
	}
}
