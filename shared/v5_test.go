package shared

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mqstream/mqstream/internal/testutil"
)

// v5member is an MQTT 5 member with manual acks and a Receive Maximum.
type v5member struct {
	c      *paho.Client
	mu     sync.Mutex
	held   []*paho.Publish
	got    int
	maxInf int
	qos    []byte
}

func (e *env) v5member(id, filter string, qos byte, receiveMax uint16) (*v5member, *paho.Suback) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	m := &v5member{}
	m.c = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			m.mu.Lock()
			m.got++
			m.qos = append(m.qos, pr.Packet.QoS)
			if pr.Packet.QoS > 0 {
				m.held = append(m.held, pr.Packet)
				m.maxInf = max(m.maxInf, len(m.held))
			}
			m.mu.Unlock()
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rm := receiveMax
	if _, err := m.c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = m.c.Disconnect(&paho.Disconnect{}) })
	sa, err := m.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil && sa == nil {
		e.t.Fatal(err)
	}
	return m, sa
}

func (m *v5member) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.got
}

func (m *v5member) ackAll() {
	m.mu.Lock()
	held := m.held
	m.held = nil
	m.mu.Unlock()
	for _, p := range held {
		_ = m.c.Ack(p)
	}
}

// TestReceiveMaximumIsRespected: an MQTT 5 member announcing Receive Maximum
// 5 never holds more than 5 unacknowledged records.
func TestReceiveMaximumIsRespected(t *testing.T) {
	e := startEnv(t, envOptions{})
	m, _ := e.v5member("rm", "$share/g/jobs/#", 1, 5)
	e.publish(constTopic("jobs/a"), "r", 0, 40)
	for acked := 0; acked < 40; acked = m.count() {
		want := min(acked+5, 40)
		testutil.Eventually(t, 5*time.Second, "next window", func() bool {
			if m.count() > want {
				t.Fatalf("got %d, more than the window allows (%d)", m.count(), want)
			}
			return m.count() == want
		})
		time.Sleep(20 * time.Millisecond) // give an over-eager server the chance to send more
		m.ackAll()
	}
	if m.maxInf != 5 {
		t.Fatalf("max in flight %d, Receive Maximum 5", m.maxInf)
	}
	testutil.Eventually(t, 5*time.Second, "all acked", func() bool { return e.stats("g", "jobs/#").Acked == 40 })
}

// TestQoS2MemberAndQoS0Member: a QoS 2 subscription completes the QoS 2 flow
// (PUBCOMP acknowledges); a QoS 0 subscription gets at-most-once delivery.
func TestQoS2MemberAndQoS0Member(t *testing.T) {
	e := startEnv(t, envOptions{})
	q2, _ := e.v5member("q2", "$share/two/jobs/#", 2, 100)
	e.publish(constTopic("jobs/a"), "x", 0, 10)
	testutil.Eventually(t, 5*time.Second, "qos 1 records", func() bool { return q2.count() == 10 })
	if q2.qos[0] != 1 {
		t.Fatalf("QoS 1 record delivered at QoS %d to a QoS 2 subscription", q2.qos[0])
	}
	q2.ackAll()
	testutil.Eventually(t, 5*time.Second, "acked", func() bool { return e.stats("two", "jobs/#").Acked == 10 })

	// QoS 2 records through a QoS 2 subscription.
	conn, _ := net.Dial("tcp", e.addr)
	pub := paho.NewClient(paho.ClientConfig{ClientID: "p2", Conn: conn})
	ctx := context.Background()
	if _, err := pub.Connect(ctx, &paho.Connect{ClientID: "p2", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(&paho.Disconnect{})
	for i := 0; i < 3; i++ {
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "jobs/q2", QoS: 2, Payload: []byte("two")}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "qos 2 records", func() bool { return q2.count() == 13 })
	if q2.qos[12] != 2 {
		t.Fatalf("QoS 2 record delivered at QoS %d", q2.qos[12])
	}
	q2.ackAll()
	testutil.Eventually(t, 5*time.Second, "PUBCOMP acks", func() bool { return e.stats("two", "jobs/#").Acked == 13 })

	q0, _ := e.v5member("q0", "$share/zero/jobs/#", 0, 100)
	e.publish(constTopic("jobs/b"), "z", 0, 10)
	testutil.Eventually(t, 5*time.Second, "qos 0 records", func() bool { return q0.count() == 10 })
	st := e.stats("zero", "jobs/#")
	if st.InFlight != 0 || st.Lag != 0 || q0.qos[0] != 0 {
		t.Fatalf("QoS 0 member: %+v qos %v", st, q0.qos)
	}
}

// TestUnstorableFilterRefusedV5: MQTT 5 gets reason 0x8F in SUBACK.
func TestUnstorableFilterRefusedV5(t *testing.T) {
	e := startEnv(t, envOptions{def: mqttDefaultNone()})
	_, sa := e.v5member("m", "$share/g/anything/#", 1, 10)
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 0x8F {
		t.Fatalf("SUBACK %+v", sa)
	}
}
