package bench

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqstream/mqstream/topic"
)

// connOpts is a tiny conn or idle run against addr, watching this
// process (which runs the node).
func connOpts(addr string, mode Mode, n int) Options {
	o := opts(addr, mode)
	o.Count, o.Concurrency, o.Hold, o.ServerPID = n, 8, 50*time.Millisecond, os.Getpid()
	return o
}

// TestConnStormCountsConnections: every client of a storm completes
// CONNECT and SUBSCRIBE, with clean and with persistent sessions, and
// the summary accounts for each.
func TestConnStormCountsConnections(t *testing.T) {
	addr := startNode(t)
	for _, persistent := range []bool{false, true} {
		o := connOpts(addr, ModeConn, 150)
		o.Persistent = persistent
		res, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Connected != 150 || res.ConnectFailed != 0 || res.ConnectRate <= 0 || res.Persistent != persistent {
			t.Fatalf("persistent %v: %+v", persistent, res)
		}
		if l := res.ConnectLatency; l == nil || l.P99 < l.P50 {
			t.Fatalf("connect latency %+v", l)
		}
		if res.ServerRSSAfter <= 0 || res.ServerCPU < 0 || !strings.Contains(res.String(), "us per connection") {
			t.Fatalf("server figures %+v\n%s", res, res)
		}
	}
	// Nothing listening: the run fails with the reason.
	if _, err := Run(context.Background(), connOpts("127.0.0.1:1", ModeConn, 5)); err == nil || !strings.Contains(err.Error(), "no connection completed") {
		t.Fatalf("storm against nothing: %v", err)
	}
}

// TestIdleHoldsConnections: idle mode holds its connections and gives
// the server's memory per connection; spread over source addresses.
func TestIdleHoldsConnections(t *testing.T) {
	addr := startNode(t)
	o := connOpts(addr, ModeIdle, 120)
	o.SourceIPs = 3
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 120 || res.ConnectFailed != 0 || res.ServerRSSBefore <= 0 || res.ServerRSSAfter <= 0 {
		t.Fatalf("%+v", res)
	}
	if want := float64(res.ServerRSSAfter-res.ServerRSSBefore) / 120; res.RSSPerConn != want {
		t.Fatalf("RSS per connection %v, want %v", res.RSSPerConn, want)
	}
	// The server here is this process: 120 connections' goroutines and
	// buffers touch fresh memory.
	if res.ServerFaults <= 0 || res.ServerFaultsPerOp != float64(res.ServerFaults)/120 {
		t.Fatalf("page faults %d, %v per connection", res.ServerFaults, res.ServerFaultsPerOp)
	}
	if s := res.String(); !strings.Contains(s, "mode idle: 120 connections") || !strings.Contains(s, "per idle connection") || !strings.Contains(s, "per connection; RSS") || !strings.Contains(s, "page faults") {
		t.Fatalf("summary %q", s)
	}
	if ip := sourceIP(o, 4); ip.String() != "127.0.0.2" {
		t.Fatalf("connection 4 of 3 sources from %v", ip)
	}
}

// TestFanoutDeliversToEverySubscriber: one topic, every subscriber gets
// every message; the counts add up at QoS 0 and 1.
func TestFanoutDeliversToEverySubscriber(t *testing.T) {
	addr := startNode(t)
	for _, qos := range []byte{0, 1} {
		o := opts(addr, ModeFanout)
		o.Publishers, o.Subscribers, o.Count, o.QoS, o.SubQoS, o.ServerPID = 1, 5, 400, qos, qos, os.Getpid()
		res, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Published != 400 || res.Expected != 2000 || len(res.PerSubscriber) != 5 {
			t.Fatalf("QoS %d: %+v", qos, res)
		}
		// What arrived once plus what was lost is what was expected.
		if res.Received-res.Duplicated+res.Lost != res.Expected {
			t.Fatalf("QoS %d: received %d duplicated %d lost %d expected %d", qos, res.Received, res.Duplicated, res.Lost, res.Expected)
		}
		if qos == 1 && (res.Received != 2000 || res.Lost != 0 || res.Duplicated != 0) {
			t.Fatalf("QoS 1: %+v", res)
		}
		if strings.Contains(res.String(), "per subscriber:") != (len(res.PerSubscriber) <= 16) {
			t.Fatalf("summary %q", res.String())
		}
		if res.ServerCPUPerOp <= 0 && res.ServerCPU > 0 {
			t.Fatalf("server CPU per message %+v", res)
		}
	}
}

// TestRoutesDeliversEachMessageOnce: many filters over several
// subscribers, publishes on random topics, each delivered to the one
// subscriber whose filter matches.
func TestRoutesDeliversEachMessageOnce(t *testing.T) {
	addr := startNode(t)
	o := opts(addr, ModeRoutes)
	o.Filters, o.Subscribers, o.Count = 250, 3, 1000
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Acked != 1000 || res.Received != 1000 || res.Expected != 1000 || res.Lost != 0 || res.Duplicated != 0 {
		t.Fatalf("%+v", res)
	}
	var sum int64
	for _, n := range res.PerSubscriber {
		sum += n
	}
	if sum != 1000 || len(res.PerSubscriber) != 3 {
		t.Fatalf("per subscriber %v", res.PerSubscriber)
	}
	o.Filters = 2
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "filters (2)") {
		t.Fatalf("fewer filters than subscribers: %v", err)
	}
}

// TestRouteTopicsMatchOneFilter: every topic of the routes scenario
// matches exactly one of its filters.
func TestRouteTopicsMatchOneFilter(t *testing.T) {
	o := Options{Topic: "b/%d", Filters: 40, Subscribers: 3}
	var filters []string
	for _, fs := range routeFilters(o) {
		filters = append(filters, fs...)
	}
	topics := routeTopics(o)
	if len(filters) != 40 || len(topics) != 40*routeLevels {
		t.Fatalf("%d filters, %d topics", len(filters), len(topics))
	}
	for _, tp := range topics {
		n := 0
		for _, f := range filters {
			if topic.Match(f, tp) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("topic %s matches %d filters", tp, n)
		}
	}
}

func TestServerPIDIsChecked(t *testing.T) {
	o := opts("127.0.0.1:1", ModePub)
	o.ServerPID = 1 << 30
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "server process") {
		t.Fatalf("a pid that does not exist: %v", err)
	}
}

// TestSummaryOfManySubscribers: a thousand subscribers' counts are
// summarised, not listed.
func TestSummaryOfManySubscribers(t *testing.T) {
	res := &Result{Mode: ModeFanout}
	for i := range 20 {
		res.PerSubscriber = append(res.PerSubscriber, int64(100+i))
	}
	if s := res.String(); !strings.Contains(s, "per subscriber (20): min 100, median 110, max 119") {
		t.Fatalf("summary %q", s)
	}
}

// TestReadProcCountsPageFaults: touching memory never touched before
// shows in the process's page faults, which only grow.
func TestReadProcCountsPageFaults(t *testing.T) {
	before, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	b, err := syscall.Mmap(-1, 0, 64<<12, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(b)
	for i := 0; i < len(b); i += 1 << 12 {
		b[i] = 1 // each page's first touch is a fault
	}
	after, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.faults-before.faults < 64 || after.rss <= 0 || after.cpu < before.cpu {
		t.Fatalf("64 fresh pages touched: faults %d -> %d, rss %d, cpu %v -> %v", before.faults, after.faults, after.rss, before.cpu, after.cpu)
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
