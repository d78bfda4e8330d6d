package main

import (
	"context"
	"encoding/json"
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
	cmd := &cobra.Command{
		Use:   "bench pub|sub|e2e|share",
		Short: "Load-test any MQTT broker (bounded by --count and --duration)",
		Long: `Load-test any MQTT broker.

  pub    publishers only: acknowledged publish rate
  sub    subscribers only: receive rate and latency of what others publish
  e2e    publishers and subscribers on the same topics: rate, loss, duplicates, latency
  share  publishers and a $share group of subscribers: each message to one member

Payloads carry the publisher, a sequence number and the send time, so loss,
duplicates and end-to-end latency are measured exactly. Every run stops after
--count messages or --duration, whichever comes first.

With several brokers (--broker a,b,c: the nodes of a cluster) the
connections are spread over them. A connection that drops is made again to
the next broker of the list (backing off up to 2 s between failed attempts,
until the run ends); a publisher then sends again every QoS 1/2 publish not
yet acknowledged, with the same payload, and a subscriber subscribes again.
The summary reports the connections lost and made again, the publishes
resent, those never acknowledged and the longest wait for an ack.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"pub", "sub", "e2e", "share"},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Mode = bench.Mode(args[0])
			var addrs []string
			for _, b := range strings.Split(broker, ",") {
				addrs = append(addrs, strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(b), "tcp://"), "mqtt://"))
			}
			o.Broker = strings.Join(addrs, ",")
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
			if jsonOut {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			_, err = cmd.OutOrStdout().Write([]byte(res.String()))
			return err
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
	f.StringVarP(&o.Topic, "topic", "t", "bench/%d", "topic pattern (%d = publisher number, or topic number with --topics)")
	f.IntVar(&o.Topics, "topics", 0, "spread each publisher's messages over this many topics (%d in --topic = 0..N-1)")
	f.StringVar(&o.Group, "group", "", "$share group name (share mode: default a new group per run; sub mode: join this group)")
	f.IntVar(&o.Idle, "idle", 0, "extra idle connections held open during the run")
	f.BoolVar(&o.Persistent, "persistent", false, "subscribers use persistent sessions (started fresh, discarded at the end)")
	f.StringVarP(&version, "mqtt-version", "V", "3.1.1", "MQTT version: 3.1.1 or 5")
	f.IntVarP(&o.Count, "count", "n", 1_000_000, "total messages to publish")
	f.DurationVarP(&o.Duration, "duration", "d", 30*time.Second, "time limit for publishing")
	f.DurationVar(&o.Drain, "drain", 5*time.Second, "how long to wait for missing deliveries after publishing")
	f.BoolVar(&jsonOut, "json", false, "print the summary as JSON")
	f.BoolVar(&quiet, "quiet", false, "no progress lines")
	return cmd
}
