package bench

import (
	"context"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The conn and idle scenarios measure connections rather than messages:
// Count clients, Concurrency at a time, each CONNECT (keep-alive 60 s)
// and SUBSCRIBE to a topic of its own (Topic with %d = its number). conn
// reports how many completed per second (a connect storm); idle then
// holds them all for Hold, pinging as keep-alive requires, and reports
// what they cost the broker's process in memory.

// connBufSize is the size of a held connection's buffers in the loader.
const connBufSize = 512

// connKeepalive is the keep-alive the held connections ask for (seconds).
const connKeepalive = 60

// connRun is one run of the conn or idle scenario.
type connRun struct {
	o     Options
	start time.Time

	next      atomic.Int64 // the next client number to connect
	connected atomic.Int64
	failed    atomic.Int64

	mu       sync.Mutex // guards clients, lat, firstErr, last
	clients  []*client
	lat      []int32 // CONNECT to SUBACK, microseconds
	firstErr error
	last     time.Time // when the last connection completed
}

// sourceIP is connection i's source address with SourceIPs > 1:
// 127.0.0.1, 127.0.0.2, ... round-robin; nil otherwise (the system picks).
func sourceIP(o Options, i int) net.IP {
	if o.SourceIPs <= 1 {
		return nil
	}
	k := i%o.SourceIPs + 1
	return net.IPv4(127, 0, byte(k>>8), byte(k))
}

func runConns(ctx context.Context, o Options, server *serverWatch) (*Result, error) {
	cr := &connRun{o: o, start: time.Now()}
	deadline := cr.start.Add(o.Duration)
	stopProgress := cr.progress(server)
	defer stopProgress()
	defer cr.closeAll()

	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	parallel(dctx, o.Count, o.Concurrency, cr.connect)
	res := cr.result()
	if res.Connected == 0 && cr.firstErr != nil {
		return nil, fmt.Errorf("no connection completed: %w", cr.firstErr)
	}
	if o.Mode == ModeIdle {
		cr.hold(ctx)
	}
	// The broker's figures with every connection still open.
	if err := server.finish(res, res.Connected); err != nil {
		return nil, err
	}
	if o.Mode == ModeIdle && res.Connected > 0 {
		res.RSSPerConn = float64(res.ServerRSSAfter-res.ServerRSSBefore) / float64(res.Connected)
	}
	res.Elapsed = time.Since(cr.start).Seconds()
	return res, nil
}

// parallel calls f for 0..n-1, conc at a time, until ctx ends.
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(ctx, i)
			}
		}()
	}
	wg.Wait()
}

// clientOptions are client i's.
func (cr *connRun) clientOptions(i int, persistent bool) clientOptions {
	return clientOptions{id: fmt.Sprintf("%s-conn-%d", cr.o.ClientPrefix, i), version: cr.o.Version, keepalive: connKeepalive,
		persistent: persistent, bufSize: connBufSize, local: sourceIP(cr.o, i)}
}

// connect connects client i and subscribes.
func (cr *connRun) connect(ctx context.Context, i int) {
	o := cr.o
	t0 := time.Now()
	c, err := dial(ctx, brokerFor(o.Broker, i), cr.clientOptions(i, o.Persistent))
	if err == nil {
		c.start()
		topic := strings.ReplaceAll(o.Topic, "%d", strconv.Itoa(i))
		if err = c.subscribe(ctx, o.SubQoS, topic); err != nil {
			c.conn.Close()
		}
	}
	now := time.Now()
	cr.mu.Lock()
	if err != nil {
		if cr.firstErr == nil && ctx.Err() == nil {
			cr.firstErr = err
		}
		cr.mu.Unlock()
		if ctx.Err() == nil {
			cr.failed.Add(1)
		}
		return
	}
	cr.clients = append(cr.clients, c)
	cr.lat = append(cr.lat, int32(min(now.Sub(t0).Microseconds(), math.MaxInt32)))
	cr.last = now
	cr.mu.Unlock()
	cr.connected.Add(1)
}

func (cr *connRun) result() *Result {
	o := cr.o
	cr.mu.Lock()
	defer cr.mu.Unlock()
	res := &Result{Mode: o.Mode, QoS: o.SubQoS, Connected: cr.connected.Load(), ConnectFailed: cr.failed.Load(),
		ConnectLatency: latencyReport(cr.lat), Persistent: o.Persistent}
	if s := cr.last.Sub(cr.start).Seconds(); s > 0 {
		res.ConnectRate = float64(res.Connected) / s
	}
	if cr.firstErr != nil {
		res.FirstError = cr.firstErr.Error()
	}
	return res
}

// progress prints a line a second: connections made, and the broker's
// RSS when watched.
func (cr *connRun) progress(server *serverWatch) func() {
	var last int64
	return everySecond(cr.o.Progress, func() string {
		n := cr.connected.Load()
		line := fmt.Sprintf("%5.0fs  connected %8d  (%6d/s)  failed %d", time.Since(cr.start).Seconds(), n, n-last, cr.failed.Load())
		if rss := server.rss(); rss > 0 {
			line += fmt.Sprintf("  server RSS %d MiB", rss>>20)
		}
		last = n
		return line
	})
}

// hold keeps the connections open for Hold, sending each a PINGREQ every
// half keep-alive.
func (cr *connRun) hold(ctx context.Context) {
	end := time.After(cr.o.Hold)
	ping := time.NewTicker(connKeepalive * time.Second / 2)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end:
			return
		case <-ping.C:
			cr.mu.Lock()
			clients := cr.clients
			cr.mu.Unlock()
			for _, c := range clients {
				c.writeRaw([]byte{0xc0, 0})
			}
		}
	}
}

// closeAll closes the connections (with DISCONNECT); with persistent
// sessions it then ends them, connecting each client id again with a
// clean session, so they do not stay on the broker.
func (cr *connRun) closeAll() {
	cr.mu.Lock()
	clients := cr.clients
	cr.clients = nil
	cr.mu.Unlock()
	for _, c := range clients {
		c.close()
	}
	if !cr.o.Persistent || len(clients) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cr.o.Duration+cr.o.Drain)
	defer cancel()
	parallel(ctx, cr.o.Count, cr.o.Concurrency, func(ctx context.Context, i int) {
		if c, err := dial(ctx, brokerFor(cr.o.Broker, i), cr.clientOptions(i, false)); err == nil {
			c.close()
		}
	})
}

// serverWatch follows the broker's process (Options.ServerPID) over a
// run; a nil one follows nothing.
type serverWatch struct {
	pid    int
	before procStat
}

func watchServer(pid int) (*serverWatch, error) {
	if pid == 0 {
		return nil, nil
	}
	st, err := readProc(pid)
	if err != nil {
		return nil, err
	}
	return &serverWatch{pid: pid, before: st}, nil
}

// rss is the process's resident memory now (0 if unknown).
func (w *serverWatch) rss() int64 {
	if w == nil {
		return 0
	}
	st, err := readProc(w.pid)
	if err != nil {
		return 0
	}
	return st.rss
}

// finish records the process's CPU time since the start (and per
// operation: message or connection) and its memory before and now.
func (w *serverWatch) finish(res *Result, ops int64) error {
	if w == nil {
		return nil
	}
	st, err := readProc(w.pid)
	if err != nil {
		return err
	}
	cpu := st.cpu - w.before.cpu
	res.ServerCPU = cpu.Seconds()
	if ops > 0 {
		res.ServerCPUPerOp = float64(cpu.Microseconds()) / float64(ops)
	}
	res.ServerRSSBefore, res.ServerRSSAfter = w.before.rss, st.rss
	res.ServerFaults = st.faults - w.before.faults
	if ops > 0 {
		res.ServerFaultsPerOp = float64(res.ServerFaults) / float64(ops)
	}
	return nil
}
