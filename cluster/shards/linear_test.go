package shards

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/mqstream/mqstream/streams"
)

// This file checks the replicated streams against a history of random
// operations under random faults (TestLinearizableAppendsUnderFaults).
//
// Appends are checked for linearizability with porcupine: per stream, the
// model is an append-only log whose state is its next offset; an append
// returns the offset of its record, so the offsets of a stream must be
// dense and agree with the real-time order of the appends (one
// acknowledged before another was called has the smaller offset). An
// append that failed or timed out has an unknown outcome: every payload
// is unique, so the final log tells whether it took effect (then it is in
// the history at the offset it got, with an open-ended return) or not
// (then it is left out, as an operation that never happened).
//
// Reads are NOT checked for linearizability, because the system does not
// offer linearizable reads: a read is served by the local replica, which
// may lag the leader (even behind an append this node acknowledged, when
// the leader was another node). They are checked for what a replica read
// does promise: the records are a window of the final committed log
// (same offsets, same bytes, same timestamps), so never a record whose
// append was not committed. Monotonic reads per node are not checked.

// linearDuration is how long the workload runs: MQSTREAM_LINEAR_DURATION
// (a Go duration) or a short default for CI.
func linearDuration(t *testing.T) time.Duration {
	v := os.Getenv("MQSTREAM_LINEAR_DURATION")
	if v == "" {
		return 5 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("MQSTREAM_LINEAR_DURATION=%q: want a positive Go duration such as 60s", v)
	}
	return d
}

// linearSeed is MQSTREAM_LINEAR_SEED, or drawn (and logged, to replay the
// nemesis's choices; the scheduling of goroutines is not replayed).
func linearSeed(t *testing.T) uint64 {
	if v := os.Getenv("MQSTREAM_LINEAR_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MQSTREAM_LINEAR_SEED=%q: %v", v, err)
		}
		return s
	}
	return rand.Uint64()
}

// appendOp is one append of the history: its payload (unique), when it
// was called and returned (ns since the start), and its outcome.
type appendOp struct {
	client       int
	stream       string
	payload      string
	call, ret    int64
	offset       uint64
	err          error // nil: acknowledged at offset
	node         string
	acknowledged bool
}

// readOp is one read of a local replica: the records it returned.
type readOp struct {
	node    string
	stream  string
	from    uint64
	records []streams.Record
}

// history collects the operations of every client.
type history struct {
	mu      sync.Mutex // guards appends and reads
	appends []appendOp
	reads   []readOp
}

func (h *history) addAppend(op appendOp) {
	h.mu.Lock()
	h.appends = append(h.appends, op)
	h.mu.Unlock()
}

func (h *history) addRead(op readOp) {
	h.mu.Lock()
	h.reads = append(h.reads, op)
	h.mu.Unlock()
}

// linearTimers are fast Raft timers that also snapshot and compact the
// log often, so a node restarted after a while catches up from a
// snapshot and its peers' records, not only from the log.
func linearTimers() Timers {
	t := LocalTimers()
	t.SnapshotInterval, t.SnapshotThreshold, t.TrailingLogs = time.Second, 200, 50
	return t
}

// TestLinearizableAppendsUnderFaults runs clients on every node of a
// three-node cluster appending to and reading a few streams while a
// nemesis partitions (both ways or one way), heals, and stops and
// restarts random nodes, one at a time so a majority remains. Then it
// checks the history (see the top of this file) and the final state:
// every acknowledged append is at its offset on every replica, offsets
// are dense, replicas are identical, no record is stored twice or comes
// from nowhere.
func TestLinearizableAppendsUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault-injection run; skipped with -short")
	}
	duration, seed := linearDuration(t), linearSeed(t)
	t.Logf("seed %d (MQSTREAM_LINEAR_SEED), workload %v (MQSTREAM_LINEAR_DURATION)", seed, duration)
	const shards, nStreams, clientsPerNode = 2, 4, 2
	c := newClusterWith(t, 3, shards, 3, linearTimers())
	c.waitLeaders()
	ctx := context.Background()
	var names []string
	for i := 0; i < nStreams; i++ {
		name := fmt.Sprintf("lin-%d", i)
		if _, err := c.nodes[0].set.CreateStream(ctx, name, streams.Retention{}); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var h history
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for n := range c.nodes {
		for k := 0; k < clientsPerNode; k++ {
			client := n*clientsPerNode + k
			rng := rand.New(rand.NewPCG(seed, uint64(client)+1))
			wg.Add(1)
			go func() {
				defer wg.Done()
				runLinearClient(c, n, client, rng, names, now, &h, stop)
			}()
		}
	}

	faults := runNemesis(t, c, rand.New(rand.NewPCG(seed, 0)), duration)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	// Every node up and connected, every replica the same.
	c.heal()
	for _, nd := range c.nodes {
		if nd.set == nil {
			nd.start()
		}
	}
	c.waitLeaders()
	c.identical()

	checkStart := time.Now()
	final := map[string][]streams.Record{}
	for _, name := range names {
		recs, err := c.nodes[0].store.Read(name, 0, streams.ReadOptions{MaxRecords: math.MaxInt32, MaxBytes: math.MaxInt32})
		if err != nil {
			t.Fatal(err)
		}
		final[name] = recs
	}
	ops := checkFinalState(t, c, names, final, h.appends)
	checkReads(t, final, h.reads)
	res, info := porcupine.CheckOperationsVerbose(appendLogModel(), ops, 0)
	checkTime := time.Since(checkStart)
	acked, unknownIn := 0, 0
	for _, op := range h.appends {
		if op.acknowledged {
			acked++
		}
	}
	unknownIn = len(ops) - acked
	t.Logf("%v of workload: %d appends (%d acknowledged, %d failed of which %d took effect), %d replica reads; faults: %s; check %v: %s",
		elapsed.Round(time.Millisecond), len(h.appends), acked, len(h.appends)-acked, unknownIn, len(h.reads), faults, checkTime.Round(time.Millisecond), res)
	if res != porcupine.Ok {
		path := fmt.Sprintf("%s/linear-%d.html", os.TempDir(), seed)
		if f, err := os.Create(path); err == nil {
			_ = porcupine.Visualize(appendLogModel(), info, f)
			_ = f.Close()
		}
		t.Fatalf("the appends are not linearizable (seed %d); visualization in %s", seed, path)
	}
}

// runLinearClient appends to and reads random streams through node n
// until stop.
func runLinearClient(c *cluster, n, client int, rng *rand.Rand, names []string, now func() int64, h *history, stop <-chan struct{}) {
	nd := c.nodes[n]
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		set, store := nd.running()
		if set == nil {
			time.Sleep(20 * time.Millisecond) // the node is down; the nemesis restarts it
			continue
		}
		stream := names[rng.IntN(len(names))]
		if rng.IntN(4) == 0 {
			recs, err := store.Read(stream, uint64(rng.IntN(50)), streams.ReadOptions{MaxRecords: 200})
			if err == nil && len(recs) > 0 {
				h.addRead(readOp{node: nd.self.ID, stream: stream, from: recs[0].Offset, records: recs})
			}
			continue
		}
		op := appendOp{client: client, stream: stream, payload: fmt.Sprintf("c%d-%d", client, seq), node: nd.self.ID}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		op.call = now()
		op.offset, op.err = set.Append(ctx, stream, streams.Record{Topic: "t", Payload: []byte(op.payload), QoS: 1, ClientID: fmt.Sprint(client)})
		op.ret = now()
		cancel()
		op.acknowledged = op.err == nil
		h.addAppend(op)
	}
}

// runNemesis injects one fault at a time for d and returns a summary.
func runNemesis(t *testing.T, c *cluster, rng *rand.Rand, d time.Duration) string {
	count := map[string]int{}
	pause := func(lo, hi time.Duration) { time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo)))) }
	for end := time.Now().Add(d); time.Now().Before(end); {
		pause(200*time.Millisecond, 800*time.Millisecond)
		k := rng.IntN(len(c.nodes))
		nd := c.nodes[k]
		switch rng.IntN(3) {
		case 0:
			count["two-way partition"]++
			c.partition(nd)
			pause(300*time.Millisecond, 1500*time.Millisecond)
			c.heal()
		case 1:
			count["one-way partition"]++
			c.cutOneWay(nd)
			pause(300*time.Millisecond, 1500*time.Millisecond)
			c.heal()
		case 2:
			count["stop and restart"]++
			nd.stop()
			pause(200*time.Millisecond, 1500*time.Millisecond)
			nd.start()
		}
	}
	return fmt.Sprintf("%d two-way partitions, %d one-way partitions, %d stops and restarts",
		count["two-way partition"], count["one-way partition"], count["stop and restart"])
}

// checkFinalState checks the final logs against the appends and returns
// the history porcupine checks: acknowledged appends, and the failed ones
// that took effect, with the offset the final log holds them at and an
// open-ended return.
func checkFinalState(t *testing.T, c *cluster, names []string, final map[string][]streams.Record, appends []appendOp) []porcupine.Operation {
	t.Helper()
	where := map[string]uint64{} // payload -> offset in its stream
	for _, name := range names {
		for i, r := range final[name] {
			if r.Offset != uint64(i) {
				t.Fatalf("%s: record %d has offset %d (offsets not dense)", name, i, r.Offset)
			}
			p := string(r.Payload)
			if _, dup := where[p]; dup {
				t.Fatalf("%s: payload %q stored twice (second at offset %d)", name, p, i)
			}
			where[p] = uint64(i)
		}
	}
	var ops []porcupine.Operation
	attempted := map[string]bool{}
	for _, op := range appends {
		attempted[op.payload] = true
		off, stored := where[op.payload]
		if op.acknowledged {
			if !stored || off != op.offset {
				t.Fatalf("append %q to %s acknowledged at offset %d by %s; the final log has it: %v at %d", op.payload, op.stream, op.offset, op.node, stored, off)
			}
		} else if stored {
			op.offset, op.ret = off, math.MaxInt64 // took effect at some time after its call
		} else {
			continue // never happened
		}
		ops = append(ops, porcupine.Operation{ClientId: op.client, Input: op.stream, Call: op.call, Output: op.offset, Return: op.ret, Metadata: op.payload})
	}
	for p := range where {
		if !attempted[p] {
			t.Fatalf("the final log holds %q, which no client appended", p)
		}
	}
	return ops
}

// checkReads checks every replica read against the final log: a window of
// it at the same offsets with the same record (bytes, timestamp), so no
// record whose append was not committed.
func checkReads(t *testing.T, final map[string][]streams.Record, reads []readOp) {
	t.Helper()
	for _, rd := range reads {
		log := final[rd.stream]
		for i, r := range rd.records {
			off := rd.from + uint64(i)
			if r.Offset != off {
				t.Fatalf("read of %s on %s from %d: record %d has offset %d", rd.stream, rd.node, rd.from, i, r.Offset)
			}
			if off >= uint64(len(log)) {
				t.Fatalf("read of %s on %s returned offset %d, beyond the final committed log (%d records): an uncommitted record", rd.stream, rd.node, off, len(log))
			}
			want := log[off]
			if string(r.Payload) != string(want.Payload) || r.Topic != want.Topic || !r.Timestamp.Equal(want.Timestamp) || r.ClientID != want.ClientID {
				t.Fatalf("read of %s on %s: offset %d holds %q at %v, the final log %q at %v", rd.stream, rd.node, off, r.Payload, r.Timestamp, want.Payload, want.Timestamp)
			}
		}
	}
}

// appendLogModel is porcupine's model of a stream: an append-only log
// whose state is its next offset. Input is the stream, output the offset
// the append got.
func appendLogModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range history {
				s := op.Input.(string)
				if by[s] == nil {
					order = append(order, s)
				}
				by[s] = append(by[s], op)
			}
			var out [][]porcupine.Operation
			for _, s := range order {
				out = append(out, by[s])
			}
			return out
		},
		Init: func() interface{} { return uint64(0) },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			next := state.(uint64)
			if output.(uint64) != next {
				return false, state
			}
			return true, next + 1
		},
		Hash: func(state interface{}) uint64 { return state.(uint64) },
		DescribeOperation: func(input, output interface{}) string {
			return fmt.Sprintf("append(%s) -> %d", input, output)
		},
		DescribeState: func(state interface{}) string { return fmt.Sprintf("next offset %d", state) },
	}
}
