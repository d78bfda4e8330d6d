package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqstream/mqstream/bench"
)

func newBenchCmd() *cobra.Command {
	var o bench.Options
	var broker string
	var jsonOut, quiet bool
	var version string
	var cqo bench.CQOptions
	cmd := &cobra.Command{
		Use:   "bench pub|sub|e2e|share|fanout|routes|conn|idle|cq",
		Short: "Load-test any MQTT broker (bounded by --count and --duration)",
		Long: `Load-test any MQTT broker.

  pub    publishers only: acknowledged publish rate
  sub    subscribers only: receive rate and latency of what others publish
  e2e    publishers and subscribers on the same topics: rate, loss, duplicates, latency
  share  publishers and a $share group of subscribers: each message to one member
  fanout publishers on one topic, --subscribers on it: deliveries/s (QoS --qos, --sub-qos)
  routes --filters distinct subscriptions with + and # over the subscribers;
         publishers publish on random topics, each matching one filter: publish rate
  conn   connect storm: --count clients (--concurrency at a time) CONNECT and
         SUBSCRIBE to a topic each (--persistent: persistent sessions): completed/s
  idle   as conn (clean sessions, keep-alive 60 s), then hold them all for --hold:
         with --server-pid, the broker's RSS per idle connection
  cq     an mqstream continuous query: creates it over the REST API (--api;
         --sql, default count/avg/max per key over 10 s tumbling windows),
         publishes --count JSON records with --keys distinct keys over MQTT
         (QoS 1) and reports the query's processing rate (its records_in
         over the run) and lag; --replay stores the records first, then
         creates the query (from the first record) and times its catch-up;
         live runs of windowed queries report how soon windows came out
         after their end (--rate paces the input, --idle-wait waits for
         the last windows to close on the query's idle timeout)

Payloads carry the publisher, a sequence number and the send time, so loss,
duplicates and end-to-end latency are measured exactly. Every run stops after
--count messages or --duration, whichever comes first (conn and idle:
--count connections; idle holds them --hold more).

With --server-pid (a broker on this machine) the summary gives the broker
process's CPU time per message (or connection), its RSS before and after
and its page faults, read from /proc. Many connections from one loopback
address run out of source ports (~28k): --source-ips N spreads them over
127.0.0.1..N.

With several brokers (--broker a,b,c: the nodes of a cluster) the
connections are spread over them. A connection that drops is made again to
the next broker of the list (backing off up to 2 s between failed attempts,
until the run ends); a publisher then sends again every QoS 1/2 publish not
yet acknowledged, with the same payload, and a subscriber subscribes again.
The summary reports the connections lost and made again, the publishes
resent, those never acknowledged and the longest wait for an ack.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"pub", "sub", "e2e", "share", "fanout", "routes", "conn", "idle", "cq"},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Mode = bench.Mode(args[0])
			var addrs []string
			for _, b := range strings.Split(broker, ",") {
				addrs = append(addrs, strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(b), "tcp://"), "mqtt://"))
			}
			o.Broker = strings.Join(addrs, ",")
			if o.Mode == "cq" {
				cqo.Broker, cqo.Count, cqo.Duration, cqo.Publishers, cqo.Window, cqo.Rate = addrs[0], o.Count, o.Duration, o.Publishers, o.Window, o.Rate
				return runBenchCQ(cmd, cqo, jsonOut, quiet)
			}
			switch version {
			case "3.1.1", "4":
				o.Version = 4
			case "5", "5.0":
				o.Version = 5
			default:
				o.Version = 0 // Validate reports it
			}
			if !quiet {
				o.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			res, err := bench.Run(ctx, o)
			if err != nil {
				return err
			}
			return printBench(cmd, res, jsonOut)
		},
	}
	f := cmd.Flags()
	f.StringVar(&broker, "broker", "tcp://127.0.0.1:1883", "broker address; several, comma-separated, spread the connections over them (the nodes of a cluster), and a dropped connection is made again to the next")
	f.IntVarP(&o.Publishers, "publishers", "p", 8, "publisher connections")
	f.IntVarP(&o.Subscribers, "subscribers", "s", 1, "subscriber connections")
	f.Uint8VarP(&o.QoS, "qos", "q", 1, "publish QoS")
	f.Uint8Var(&o.SubQoS, "sub-qos", 1, "subscription QoS")
	f.IntVar(&o.PayloadSize, "size", 100, "payload size in bytes (at least 20)")
	f.IntVarP(&o.Window, "window", "w", 256, "QoS 1/2 messages in flight per publisher")
	f.Float64Var(&o.Rate, "rate", 0, "total publish rate in msg/s (0 = as fast as possible)")
	f.StringVarP(&o.Topic, "topic", "t", "", "topic pattern (%d = publisher number, or topic number with --topics; conn, idle: client number); default bench/%d, for conn and idle idle/%d")
	f.IntVar(&o.Topics, "topics", 0, "spread each publisher's messages over this many topics (%d in --topic = 0..N-1)")
	f.StringVar(&o.Group, "group", "", "$share group name (share mode: default a new group per run; sub mode: join this group)")
	f.IntVar(&o.Idle, "idle", 0, "extra idle connections held open during the run")
	f.BoolVar(&o.Persistent, "persistent", false, "subscribers (conn: the clients) use persistent sessions (started fresh, discarded at the end)")
	f.IntVar(&o.Filters, "filters", 10000, "routes: distinct subscriptions, spread over the subscribers")
	f.IntVarP(&o.Concurrency, "concurrency", "c", 64, "conn, idle: connections being opened at once")
	f.DurationVar(&o.Hold, "hold", 10*time.Second, "idle: how long to hold the connections once open")
	f.IntVar(&o.SourceIPs, "source-ips", 0, "conn, idle, --idle: spread connections over source addresses 127.0.0.1..N (loopback brokers)")
	f.IntVar(&o.ServerPID, "server-pid", 0, "the broker's process id on this machine: report its CPU per message, RSS and page faults")
	f.StringVarP(&version, "mqtt-version", "V", "3.1.1", "MQTT version: 3.1.1 or 5")
	f.IntVarP(&o.Count, "count", "n", 1_000_000, "total messages to publish (conn, idle: connections)")
	f.DurationVarP(&o.Duration, "duration", "d", 30*time.Second, "time limit for publishing")
	f.DurationVar(&o.Drain, "drain", 5*time.Second, "how long to wait for missing deliveries after publishing")
	f.StringVar(&cqo.API, "api", "http://127.0.0.1:8080", "cq: the node's HTTP API")
	f.StringVar(&cqo.Token, "api-token", "", "cq: bearer token for the API (an admin's)")
	f.IntVar(&cqo.Keys, "keys", 10000, "cq: distinct keys")
	f.DurationVar(&cqo.IdleWait, "idle-wait", 0, "cq, live: wait up to this long after the query read everything for its windows to close on its idle timeout")
	f.BoolVar(&cqo.Replay, "replay", false, "cq: store the records first, then create the query and time its catch-up")
	f.StringVar(&cqo.SQL, "sql", bench.DefaultCQSQL, "cq: the query ({in}, {out}: the input and output streams bench_cq_in, bench_cq_out)")
	f.BoolVar(&jsonOut, "json", false, "print the summary as JSON")
	f.BoolVar(&quiet, "quiet", false, "no progress lines")
	return cmd
}

// runBenchCQ runs the cq scenario and prints its summary.
func runBenchCQ(cmd *cobra.Command, o bench.CQOptions, jsonOut, quiet bool) error {
	if !quiet {
		o.Progress = cmd.ErrOrStderr()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := bench.RunCQ(ctx, o)
	if err != nil {
		return err
	}
	return printBench(cmd, res, jsonOut)
}

// printBench prints a run's summary, as text or JSON.
func printBench(cmd *cobra.Command, res fmt.Stringer, jsonOut bool) error {
	if jsonOut {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	_, err := cmd.OutOrStdout().Write([]byte(res.String()))
	return err
}
