// Package bench load-tests any MQTT broker: publishers with a window of
// messages in flight, subscribers (plain or in a $share group), and an
// accounting of what was published, acknowledged, delivered, lost and
// duplicated, with end-to-end latency taken from a timestamp in the payload.
// It is what `mqstream bench` runs.
package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode selects what runs.
type Mode string

const (
	// ModePub runs publishers only and measures acknowledged throughput.
	ModePub Mode = "pub"
	// ModeSub runs subscribers only (something else publishes).
	ModeSub Mode = "sub"
	// ModeE2E runs publishers and subscribers on the same topics: every
	// subscriber gets every message.
	ModeE2E Mode = "e2e"
	// ModeShare runs publishers and a $share group of subscribers: each
	// message goes to one member.
	ModeShare Mode = "share"
	// ModeFanout runs publishers on one topic and subscribers to it:
	// every subscriber gets every message (deliveries/s).
	ModeFanout Mode = "fanout"
	// ModeRoutes subscribes Filters distinct filters with + and # and
	// publishes on random topics, each matching one filter (routes.go).
	ModeRoutes Mode = "routes"
	// ModeConn connects Count clients, each subscribing to a topic of its
	// own: completed connections per second (conns.go).
	ModeConn Mode = "conn"
	// ModeIdle connects Count clients as ModeConn does, holds them idle
	// for Hold and reports the broker's memory per connection.
	ModeIdle Mode = "idle"
)

// modes lists the modes (for errors).
const modes = "pub, sub, e2e, share, fanout, routes, conn, idle"

// Options configure a run. Every run is bounded by Count and Duration.
type Options struct {
	Mode Mode
	// Broker is host:port, or several separated by commas: connections
	// are spread over them round-robin (the nodes of a cluster).
	Broker      string
	Publishers  int
	Subscribers int
	QoS         byte // publish QoS
	SubQoS      byte // subscription QoS
	PayloadSize int
	// Window is the number of QoS 1/2 messages a publisher keeps in flight.
	Window int
	// Rate is the total publish rate in messages/s over all publishers; 0 = as fast as possible.
	Rate float64
	// Topic is the publish topic pattern; %d is replaced by the publisher
	// number, or, with Topics > 0, by a topic number from 0 to Topics-1
	// that each publisher cycles through (publisher p uses p, p+P, p+2P,
	// ... modulo Topics), so P publishers cover Topics topics evenly.
	Topic  string
	Topics int
	// Group names the $share group in share mode (empty = a new name per
	// run); in sub mode a non-empty Group makes the subscribers join it.
	Group string
	// Idle opens this many extra connections that only keep alive, held for
	// the whole run (to measure a broker with many connected clients).
	Idle int
	// Filters is the number of distinct subscriptions in routes mode.
	Filters int
	// Concurrency is the number of connections being opened at once in
	// conn and idle mode (0 = 64).
	Concurrency int
	// Hold is how long idle mode holds its connections once open (0 =
	// 10 s); the broker's RSS is read at its end.
	Hold time.Duration
	// SourceIPs spreads the connections of conn and idle mode over this
	// many loopback source addresses (127.0.0.1, 127.0.0.2, ...): one
	// address pair has only ~28k ephemeral ports. Loopback brokers only.
	SourceIPs int
	// ServerPID is the broker's process on this machine (0 = unknown):
	// the summary then gives its CPU time per message (or connection) and
	// its RSS before and after.
	ServerPID int
	// Persistent gives subscribers sessions that outlive their connection
	// (MQTT 3.1.1 clean session 0, MQTT 5 session expiry 300 s), started
	// fresh and discarded at the end, to measure a broker's persistent
	// session path.
	Persistent bool
	// Version is the MQTT protocol version: 4 (3.1.1) or 5.
	Version byte
	// Count is the total number of messages to publish (over all publishers).
	Count int
	// Duration bounds the publishing time.
	Duration time.Duration
	// Drain is how long subscribers wait for missing messages after publishing ends.
	Drain time.Duration
	// ClientPrefix prefixes client ids.
	ClientPrefix string
	// Progress, if not nil, receives a progress line every second.
	Progress io.Writer
	// faults, for tests of the accounting: the subscribers drop every
	// dropEvery-th delivery and count every dupEvery-th one twice, as a
	// lossy or duplicating broker would.
	dropEvery, dupEvery int
	// onAcked, for tests, is called with each acknowledged publish's
	// publisher and sequence number (from the connections' read loops).
	onAcked func(p int, seq uint64)
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	switch o.Mode {
	case ModePub, ModeSub, ModeE2E, ModeShare, ModeFanout, ModeRoutes, ModeConn, ModeIdle:
	default:
		errs = append(errs, fmt.Errorf("mode %q is not one of %s", o.Mode, modes))
	}
	if o.Broker == "" {
		errs = append(errs, errors.New("broker address is empty"))
	}
	conns := o.Mode == ModeConn || o.Mode == ModeIdle
	if !conns && o.Mode != ModeSub && o.Publishers < 1 {
		errs = append(errs, errors.New("publishers must be at least 1"))
	}
	if !conns && o.Mode != ModePub && o.Subscribers < 1 {
		errs = append(errs, errors.New("subscribers must be at least 1"))
	}
	if o.Mode == ModeRoutes && o.Filters < o.Subscribers {
		errs = append(errs, fmt.Errorf("routes: filters (%d) must be at least the number of subscribers (%d)", o.Filters, o.Subscribers))
	}
	if o.Concurrency < 0 || o.Hold < 0 || o.SourceIPs < 0 || o.SourceIPs > 65000 || o.ServerPID < 0 {
		errs = append(errs, errors.New("concurrency, hold, source IPs (at most 65000) and server pid must not be negative"))
	}
	if o.QoS > 2 || o.SubQoS > 2 {
		errs = append(errs, errors.New("qos must be 0, 1 or 2"))
	}
	if o.PayloadSize < headerSize {
		errs = append(errs, fmt.Errorf("payload size must be at least %d bytes (sequence and timestamp)", headerSize))
	}
	if o.Window < 1 || o.Window > 32767 {
		errs = append(errs, errors.New("window must be 1..32767"))
	}
	if o.Count < 1 {
		errs = append(errs, errors.New("count must be at least 1"))
	}
	if o.Duration <= 0 {
		errs = append(errs, errors.New("duration must be positive"))
	}
	if o.Version != 4 && o.Version != 5 {
		errs = append(errs, errors.New("version must be 4 (3.1.1) or 5"))
	}
	if o.Rate < 0 {
		errs = append(errs, errors.New("rate must not be negative"))
	}
	if o.Topics < 0 {
		errs = append(errs, errors.New("topics must not be negative"))
	}
	for _, b := range strings.Split(o.Broker, ",") {
		if o.Broker != "" && strings.TrimSpace(b) == "" {
			errs = append(errs, fmt.Errorf("broker list %q has an empty address", o.Broker))
			break
		}
	}
	return errors.Join(errs...)
}

// Result is the summary of a run.
type Result struct {
	Mode        Mode    `json:"mode"`
	Publishers  int     `json:"publishers"`
	Subscribers int     `json:"subscribers"`
	QoS         byte    `json:"qos"`
	PayloadSize int     `json:"payload_size"`
	Window      int     `json:"window"`
	Elapsed     float64 `json:"elapsed_s"`
	// Published counts messages written; Acked those acknowledged with
	// success (QoS 1/2); Refused those acknowledged with a failure code.
	Published int64   `json:"published"`
	Acked     int64   `json:"acked"`
	Refused   int64   `json:"refused"`
	PubRate   float64 `json:"publish_rate"`
	// Persistent: the sessions outlive their connections.
	Persistent bool `json:"persistent,omitempty"`
	// Connected counts the connections of conn and idle mode that
	// completed CONNECT and SUBSCRIBE, ConnectFailed those that did not
	// (FirstError says why), ConnectRate how many completed per second.
	Connected     int64   `json:"connected,omitempty"`
	ConnectFailed int64   `json:"connect_failed,omitempty"`
	ConnectRate   float64 `json:"connect_rate,omitempty"`
	FirstError    string  `json:"first_error,omitempty"`
	// ConnectLatency is the time from dialing to the SUBACK.
	ConnectLatency *LatencyReport `json:"connect_latency_us,omitempty"`
	// The broker's process (Options.ServerPID): CPU time over the run,
	// per message (the larger of acknowledged or published, and
	// received) or per connection, and RSS at the start and the end; in
	// idle mode RSSPerConn is the growth per connection. ServerFaults
	// are its minor page faults over the run (fresh memory touched),
	// also per message or connection.
	ServerCPU         float64 `json:"server_cpu_s,omitempty"`
	ServerCPUPerOp    float64 `json:"server_cpu_us_per_op,omitempty"`
	ServerRSSBefore   int64   `json:"server_rss_before,omitempty"`
	ServerRSSAfter    int64   `json:"server_rss_after,omitempty"`
	RSSPerConn        float64 `json:"server_rss_per_conn,omitempty"`
	ServerFaults      int64   `json:"server_page_faults,omitempty"`
	ServerFaultsPerOp float64 `json:"server_page_faults_per_op,omitempty"`
	// Received counts deliveries; Expected what should have arrived; Lost and
	// Duplicated compare the two per (publisher, sequence).
	Received int64   `json:"received"`
	Expected int64   `json:"expected"`
	RecvRate float64 `json:"receive_rate"`
	Lost     int64   `json:"lost"`
	// Missing names what a subscriber did not get in e2e mode, as
	// "sub S pub P seq A-B" ranges below the highest sequence any
	// subscriber got from that publisher (at most maxMissing ranges).
	Missing    []string       `json:"missing,omitempty"`
	Duplicated int64          `json:"duplicated"`
	Latency    *LatencyReport `json:"latency_us,omitempty"`
	// AckLatency is the time from sending a QoS 1/2 publish to its
	// PUBACK/PUBREC (a sample of up to maxLatencySamples per publisher).
	AckLatency *LatencyReport `json:"ack_latency_us,omitempty"`
	// PerSubscriber is the number of messages each subscriber received.
	PerSubscriber []int64 `json:"per_subscriber,omitempty"`
	// Disconnects counts connections of publishers and subscribers that
	// dropped (their node died or closed them); Reconnects those made
	// again, each to the next broker of the list. Fewer reconnects than
	// disconnects: a client found no broker before the run ended.
	Disconnects int64 `json:"disconnects"`
	Reconnects  int64 `json:"reconnects"`
	// Resent counts QoS 1/2 publishes sent again on a new connection
	// because the old one dropped before acknowledging them.
	Resent int64 `json:"resent"`
	// Unacked counts QoS 1/2 publishes neither acknowledged nor refused
	// when the run ended.
	Unacked int64 `json:"unacked"`
	// MaxAckGapMS is the longest time a publisher with publishes in flight
	// went without an ack (QoS 1/2): a node's failover as the clients see
	// it.
	MaxAckGapMS float64 `json:"max_ack_gap_ms"`
	// MaxAckGapEnd is when that longest wait ended (RFC 3339, UTC, ms), to
	// set beside the times of the faults that caused it.
	MaxAckGapEnd string `json:"max_ack_gap_end,omitempty"`
}

// LatencyReport holds latency percentiles in microseconds.
type LatencyReport struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// headerSize is the payload prefix: publisher (4), sequence (8), send time (8).
const headerSize = 20

// maxLatencySamples bounds the memory used for latency samples.
const maxLatencySamples = 5_000_000

// Run executes a benchmark and returns its summary.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Drain == 0 {
		o.Drain = 5 * time.Second
	}
	if o.Topic == "" {
		o.Topic = "bench/%d"
		if o.Mode == ModeConn || o.Mode == ModeIdle {
			// Their clients' subscriptions must not catch another
			// scenario's publishes run at the same time (pub's
			// bench/0..7): idle clients that receive are not idle.
			o.Topic = "idle/%d"
		}
	}
	if o.ClientPrefix == "" {
		o.ClientPrefix = fmt.Sprintf("bench-%d", time.Now().UnixNano()%1e6)
	}
	if o.Concurrency == 0 {
		o.Concurrency = 64
	}
	if o.Hold == 0 {
		o.Hold = 10 * time.Second
	}
	if o.Mode == ModeFanout {
		// One topic for every publisher, subscribed as it is.
		o.Topic, o.Topics = strings.ReplaceAll(o.Topic, "%d", "0"), 0
	}
	if o.Group == "" && o.Mode == ModeShare {
		// A fresh group per run: on a broker with durable groups (mqstream)
		// a group outlives its members, and a reused one would hand this run
		// the backlog earlier runs published while it had no members.
		o.Group = o.ClientPrefix
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	server, err := watchServer(o.ServerPID)
	if err != nil {
		return nil, err
	}
	if o.Mode == ModeConn || o.Mode == ModeIdle {
		return runConns(ctx, o, server)
	}
	r := &run{o: o, perPub: perPublisher(o), server: server}
	if o.Mode == ModeRoutes {
		r.routeTopics = routeTopics(o)
	}
	if o.Idle > 0 {
		idle, err := openIdle(ctx, o)
		defer func() {
			for _, c := range idle {
				c.close()
			}
		}()
		if err != nil {
			return nil, err
		}
	}
	if o.Mode != ModePub {
		if err := r.startSubscribers(ctx); err != nil {
			r.closeSubscribers()
			return nil, err
		}
		defer r.closeSubscribers()
	}
	return r.execute(ctx)
}

// openIdle opens o.Idle connections that do nothing but keep alive (their
// read loops answer PINGRESP), a few at a time.
func openIdle(ctx context.Context, o Options) ([]*client, error) {
	out := make([]*client, 0, o.Idle)
	for i := 0; i < o.Idle; i++ {
		c, err := dial(ctx, brokerFor(o.Broker, i), clientOptions{id: fmt.Sprintf("%s-idle-%d", o.ClientPrefix, i), version: o.Version, keepalive: 300,
			bufSize: connBufSize, local: sourceIP(o, i)})
		if err != nil {
			return out, fmt.Errorf("idle connection %d: %w", i, err)
		}
		c.start()
		out = append(out, c)
	}
	return out, nil
}

func perPublisher(o Options) []int {
	n := max(o.Publishers, 1)
	out := make([]int, n)
	for i := range out {
		out[i] = o.Count / n
		if i < o.Count%n {
			out[i]++
		}
	}
	return out
}

type run struct {
	o      Options
	perPub []int
	// server follows the broker's process (nil: not given).
	server *serverWatch
	// routeTopics are the topics of routes mode.
	routeTopics []string
	subs        []*subscriber
	// stopKeepers ends the subscribers' reconnection goroutines (keepers).
	stopKeepers context.CancelFunc
	keepers     sync.WaitGroup

	published atomic.Int64
	acked     atomic.Int64
	refused   atomic.Int64
	inflight  atomic.Int64
	received  atomic.Int64

	// Connections dropped and made again, publishes sent again on a new
	// connection.
	disconnects atomic.Int64
	reconnects  atomic.Int64
	resent      atomic.Int64

	ackMu     sync.Mutex    // guards ackLat, maxAckGap and maxAckGapEnd
	ackLat    []int32       // PUBACK latencies, microseconds
	maxAckGap time.Duration // the longest wait of a publisher for an ack
	// maxAckGapEnd is when the wait of maxAckGap ended.
	maxAckGapEnd time.Time
}

func (r *run) deliver(s *subscriber, payload []byte) {
	if n := s.faults.Add(1); r.o.dropEvery > 0 && n%int64(r.o.dropEvery) == 0 {
		return
	} else if r.o.dupEvery > 0 && n%int64(r.o.dupEvery) == 0 {
		r.account(s, payload)
	}
	r.account(s, payload)
}

// account records one delivery: its latency and whether it was seen before.
func (r *run) account(s *subscriber, payload []byte) {
	now := time.Now().UnixNano()
	r.received.Add(1)
	s.got.Add(1)
	if len(payload) < headerSize {
		return
	}
	p := int(binary.BigEndian.Uint32(payload))
	seq := binary.BigEndian.Uint64(payload[4:])
	sent := int64(binary.BigEndian.Uint64(payload[12:]))
	s.mu.Lock()
	defer s.mu.Unlock()
	if p < len(s.seen) && seq/64 < uint64(len(s.seen[p])) {
		word, bit := &s.seen[p][seq/64], uint64(1)<<(seq%64)
		if *word&bit != 0 {
			s.dups++
		} else {
			s.distinct++
		}
		*word |= bit
	}
	if len(s.lat) < maxLatencySamples/max(r.o.Subscribers, 1) {
		us := (now - sent) / 1000
		s.lat = append(s.lat, int32(min(us, math.MaxInt32)))
	}
}

func (r *run) execute(ctx context.Context) (*Result, error) {
	o := r.o
	start := time.Now()
	deadline := start.Add(o.Duration)
	stopProgress := r.progress(start)
	defer stopProgress()

	if o.Mode == ModeSub {
		// Wait until Count messages arrived or the time is up.
		for r.received.Load() < int64(o.Count) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		return r.finish(r.result(time.Since(start), time.Since(start)))
	}

	var wg sync.WaitGroup
	for p := 0; p < o.Publishers; p++ {
		c, conns, err := dialAny(ctx, o.Broker, p, clientOptions{id: fmt.Sprintf("%s-pub-%d", o.ClientPrefix, p), version: o.Version, keepalive: 60})
		if err != nil {
			return nil, fmt.Errorf("publisher %d: %w", p, err)
		}
		pb := r.newPublisher(p, c, deadline)
		pb.conns = conns
		wg.Add(1)
		go func() {
			defer wg.Done()
			pb.run(ctx, r.perPub[p], deadline)
		}()
	}
	wg.Wait()
	pubElapsed := time.Since(start)
	if o.Mode == ModePub {
		return r.finish(r.result(pubElapsed, pubElapsed))
	}
	// Wait for deliveries to arrive; stop early once all expected arrived.
	// That counts distinct messages, as the result does: received also
	// counts duplicates, and once they make up for the messages still on
	// their way it would end the wait before those arrive (and report them
	// lost).
	expected := r.expected()
	last, lastCount := time.Now(), r.received.Load()
	for ctx.Err() == nil {
		if r.arrived(expected) >= expected {
			break
		}
		if n := r.received.Load(); n != lastCount {
			last, lastCount = time.Now(), n
		}
		if time.Since(last) > o.Drain {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r.finish(r.result(pubElapsed, time.Since(start)))
}

// finish adds the broker process's figures to a result.
func (r *run) finish(res *Result) (*Result, error) {
	msgs := max(res.Published, res.Acked, res.Received)
	if r.o.QoS > 0 {
		msgs = max(res.Acked, res.Received)
	}
	if err := r.server.finish(res, msgs); err != nil {
		return nil, err
	}
	return res, nil
}

// arrived counts the expected deliveries that arrived so far, as the
// result counts them: per subscriber the distinct messages it got, or in
// share mode the distinct messages across the group (computed only once
// the cheaper per-subscriber sum, an upper bound, reaches expected).
func (r *run) arrived(expected int64) int64 {
	var n int64
	for _, s := range r.subs {
		s.mu.Lock()
		n += s.distinct
		s.mu.Unlock()
	}
	if (r.o.Mode == ModeShare || r.o.Mode == ModeRoutes) && n >= expected {
		n = uniqueAcross(r.subs)
	}
	return n
}

// expected is the number of deliveries a correct broker makes.
func (r *run) expected() int64 {
	base := r.published.Load()
	if r.o.QoS > 0 {
		base = r.acked.Load()
	}
	if r.o.Mode == ModeE2E || r.o.Mode == ModeFanout {
		return base * int64(r.o.Subscribers)
	}
	return base
}

func (r *run) progress(start time.Time) func() {
	var lastPub, lastRecv int64
	return everySecond(r.o.Progress, func() string {
		pub, recv := r.published.Load(), r.received.Load()
		line := fmt.Sprintf("%5.0fs  pub %9d/s  acked %10d  in flight %6d  recv %9d/s  total recv %10d  reconnects %d",
			time.Since(start).Seconds(), pub-lastPub, r.acked.Load(), r.inflight.Load(), recv-lastRecv, recv, r.reconnects.Load())
		lastPub, lastRecv = pub, recv
		return line
	})
}

// everySecond writes line() to w every second until the returned function
// is called; nothing without w.
func everySecond(w io.Writer, line func() string) (stop func()) {
	if w == nil {
		return func() {}
	}
	stopc := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopc:
				return
			case <-t.C:
				fmt.Fprintln(w, line())
			}
		}
	}()
	return func() { close(stopc); <-done }
}

func (r *run) result(pubElapsed, total time.Duration) *Result {
	o := r.o
	res := &Result{
		Mode: o.Mode, Publishers: o.Publishers, Subscribers: o.Subscribers, QoS: o.QoS,
		PayloadSize: o.PayloadSize, Window: o.Window, Elapsed: total.Seconds(),
		Published: r.published.Load(), Acked: r.acked.Load(), Refused: r.refused.Load(),
		Received: r.received.Load(),
	}
	if o.Mode == ModeSub {
		res.Publishers = 0
	}
	if s := pubElapsed.Seconds(); s > 0 {
		if o.QoS > 0 {
			res.PubRate = float64(res.Acked) / s
		} else {
			res.PubRate = float64(res.Published) / s
		}
	}
	res.Disconnects, res.Reconnects, res.Resent = r.disconnects.Load(), r.reconnects.Load(), r.resent.Load()
	if o.QoS > 0 && o.Mode != ModeSub {
		res.Unacked = max(res.Published-res.Acked-res.Refused, 0)
	}
	r.ackMu.Lock()
	res.AckLatency = latencyReport(r.ackLat)
	res.MaxAckGapMS = float64(r.maxAckGap.Microseconds()) / 1000
	if !r.maxAckGapEnd.IsZero() {
		res.MaxAckGapEnd = r.maxAckGapEnd.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	r.ackMu.Unlock()
	if len(r.subs) == 0 {
		return res
	}
	if s := total.Seconds(); s > 0 {
		res.RecvRate = float64(res.Received) / s
	}
	var lat []int32
	var unique int64
	for _, s := range r.subs {
		s.mu.Lock()
		res.Duplicated += s.dups
		lat = append(lat, s.lat...)
		unique += s.distinct
		s.mu.Unlock()
		res.PerSubscriber = append(res.PerSubscriber, s.got.Load())
	}
	if o.Mode != ModeSub {
		res.Expected = r.expected()
		if o.Mode == ModeShare || o.Mode == ModeRoutes {
			// Across the group (routes: the subscribers), each message counts once; a second member
			// getting it is a duplicate.
			unique = uniqueAcross(r.subs)
			res.Duplicated = res.Received - unique
		}
		res.Lost = max(res.Expected-unique, 0)
		if o.Mode == ModeE2E && res.Lost > 0 {
			res.Missing = missingRanges(r.subs)
		}
	}
	res.Latency = latencyReport(lat)
	return res
}

// latencyReport sorts samples (microseconds) and gives their percentiles;
// nil without samples.
func latencyReport(lat []int32) *LatencyReport {
	if len(lat) == 0 {
		return nil
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[min(int(p*float64(len(lat))), len(lat)-1)]) }
	return &LatencyReport{P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), P999: pct(0.999), Max: float64(lat[len(lat)-1])}
}

// uniqueAcross counts the distinct (publisher, sequence) pairs seen by any
// subscriber. It holds every subscriber's lock (deliveries may still arrive).
func uniqueAcross(subs []*subscriber) int64 {
	for _, s := range subs {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	var n int64
	for p := range subs[0].seen {
		for w := range subs[0].seen[p] {
			var word uint64
			for _, s := range subs {
				word |= s.seen[p][w]
			}
			n += int64(popcount(word))
		}
	}
	return n
}

// maxMissing bounds Result.Missing.
const maxMissing = 50

// missingRanges lists, per subscriber and publisher, the sequences below
// the highest one any subscriber got from that publisher that the
// subscriber did not get (those after it were most likely never sent).
func missingRanges(subs []*subscriber) []string {
	for _, s := range subs {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	var out []string
	for p := range subs[0].seen {
		top := -1
		for _, s := range subs {
			for w := len(s.seen[p]) - 1; w >= 0; w-- {
				if word := s.seen[p][w]; word != 0 {
					top = max(top, w*64+63-bits.LeadingZeros64(word))
					break
				}
			}
		}
		for i, s := range subs {
			for seq := 0; seq < top; seq++ {
				if s.seen[p][seq/64]&(1<<(seq%64)) != 0 {
					continue
				}
				end := seq
				for end+1 < top && s.seen[p][(end+1)/64]&(1<<((end+1)%64)) == 0 {
					end++
				}
				if len(out) == maxMissing {
					return append(out, "...")
				}
				out = append(out, fmt.Sprintf("sub %d pub %d seq %d-%d", i, p, seq, end))
				seq = end
			}
		}
	}
	return out
}

func popcount(x uint64) int {
	n := 0
	for x != 0 {
		x &= x - 1
		n++
	}
	return n
}

// String renders a result for people.
func (res *Result) String() string {
	var b strings.Builder
	if res.Mode == ModeConn || res.Mode == ModeIdle {
		res.connString(&b)
		return b.String()
	}
	fmt.Fprintf(&b, "mode %s: %d publishers, %d subscribers, QoS %d, %d-byte payloads, window %d, %.1fs\n",
		res.Mode, res.Publishers, res.Subscribers, res.QoS, res.PayloadSize, res.Window, res.Elapsed)
	if res.Mode != ModeSub {
		fmt.Fprintf(&b, "  published %d, acked %d, refused %d, publish rate %.0f msg/s\n", res.Published, res.Acked, res.Refused, res.PubRate)
	}
	if res.Mode != ModePub {
		fmt.Fprintf(&b, "  received %d (expected %d), receive rate %.0f msg/s, lost %d, duplicated %d\n",
			res.Received, res.Expected, res.RecvRate, res.Lost, res.Duplicated)
		if len(res.Missing) > 0 {
			fmt.Fprintf(&b, "  missing: %s\n", strings.Join(res.Missing, ", "))
		}
		if len(res.PerSubscriber) > 0 {
			if n := len(res.PerSubscriber); n > 16 {
				// A thousand fan-out subscribers: their spread, not a list.
				sorted := slices.Clone(res.PerSubscriber)
				slices.Sort(sorted)
				fmt.Fprintf(&b, "  per subscriber (%d): min %d, median %d, max %d\n", n, sorted[0], sorted[n/2], sorted[n-1])
			} else {
				fmt.Fprintf(&b, "  per subscriber: %v\n", res.PerSubscriber)
			}
		}
	}
	if res.Disconnects > 0 || res.Unacked > 0 || (res.Mode != ModeSub && res.QoS > 0) {
		fmt.Fprintf(&b, "  connections lost %d, reconnected %d, resent %d, unacked %d, longest wait for an ack %.0f ms",
			res.Disconnects, res.Reconnects, res.Resent, res.Unacked, res.MaxAckGapMS)
		if res.MaxAckGapEnd != "" {
			fmt.Fprintf(&b, " (ended %s)", res.MaxAckGapEnd)
		}
		b.WriteString("\n")
	}
	if l := res.AckLatency; l != nil {
		fmt.Fprintf(&b, "  ack latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	if l := res.Latency; l != nil {
		fmt.Fprintf(&b, "  latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	res.serverString(&b, "message")
	return b.String()
}

// connString renders a result of conn or idle mode.
func (res *Result) connString(b *strings.Builder) {
	session := "clean"
	if res.Persistent {
		session = "persistent"
	}
	fmt.Fprintf(b, "mode %s: %d connections (%s sessions, 1 subscription each), %d failed, %.1fs\n",
		res.Mode, res.Connected, session, res.ConnectFailed, res.Elapsed)
	if res.FirstError != "" {
		fmt.Fprintf(b, "  first failure: %s\n", res.FirstError)
	}
	fmt.Fprintf(b, "  connect rate %.0f/s (CONNECT+SUBSCRIBE completed)\n", res.ConnectRate)
	if l := res.ConnectLatency; l != nil {
		fmt.Fprintf(b, "  connect latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	res.serverString(b, "connection")
	if res.Mode == ModeIdle && res.ServerRSSAfter > 0 {
		fmt.Fprintf(b, "  server RSS per idle connection %.1f KiB\n", res.RSSPerConn/1024)
	}
}

// serverString renders the broker process's figures, if taken.
func (res *Result) serverString(b *strings.Builder, per string) {
	if res.ServerRSSAfter == 0 {
		return
	}
	fmt.Fprintf(b, "  server CPU %.2fs, %.2f us per %s; RSS %.1f MiB -> %.1f MiB; page faults %d, %.2f per %s\n", res.ServerCPU, res.ServerCPUPerOp, per,
		float64(res.ServerRSSBefore)/(1<<20), float64(res.ServerRSSAfter)/(1<<20), res.ServerFaults, res.ServerFaultsPerOp, per)
}

// dialAny connects connection k to the k-th broker of the list, or if
// that fails to the next ones in turn, each tried once; conns is how many
// brokers it tried (connection k's next broker is brokerFor(brokers,
// k+conns)).
func dialAny(ctx context.Context, brokers string, k int, co clientOptions) (c *client, conns int, err error) {
	var errs []error
	for conns < len(strings.Split(brokers, ",")) {
		c, err = dial(ctx, brokerFor(brokers, k+conns), co)
		conns++
		if err == nil {
			return c, conns, nil
		}
		errs = append(errs, err)
	}
	return nil, conns, errors.Join(errs...)
}

// brokerFor returns the address connection k dials: the k-th of the
// comma-separated brokers, round-robin.
func brokerFor(brokers string, k int) string {
	list := strings.Split(brokers, ",")
	return strings.TrimSpace(list[k%len(list)])
}
