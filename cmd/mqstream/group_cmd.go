package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
)

func newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Manage $share consumer groups (through a node's HTTP API)"}
	cmd.AddCommand(groupLs(), groupDescribe(), groupCreate(), groupSeek(), groupRm())
	return cmd
}

// groupPath is /v1/groups/NAME with ?filter= when given.
func groupPath(name, filter, suffix string) string {
	p := "/v1/groups/" + url.PathEscape(name) + suffix
	if filter != "" {
		p += "?filter=" + url.QueryEscape(filter)
	}
	return p
}

func groupLs() *cobra.Command {
	return listCommand(listSpec{
		short: "List groups with lag and in-flight counts", path: "/v1/groups", key: "groups",
		header: []string{"GROUP", "FILTER", "MEMBERS", "LAG", "IN FLIGHT", "ACKED", "REDELIVERED", "DEAD", "STRATEGY"},
		row: func(g map[string]any) []string {
			members, _ := g["members"].([]any)
			return []string{str(g["name"]), str(g["filter"]), fmt.Sprint(len(members)), str(g["lag"]),
				str(g["in_flight"]), str(g["acked"]), str(g["redelivered"]), str(g["dead_lettered"]), str(g["strategy"])}
		},
	})
}

func groupDescribe() *cobra.Command {
	var filter string
	cmd := &cobra.Command{
		Use: "describe NAME", Short: "Show a group's members, positions, lag and redeliveries", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var g map[string]any
			if err := call(cmd, "GET", groupPath(args[0], filter, ""), nil, &g); err != nil {
				return err
			}
			return printResult(cmd, g, func() error {
				out := cmd.OutOrStdout()
				fields := [][2]string{{"group", str(g["name"])}, {"filter", str(g["filter"])}}
				if g["node"] != nil { // cluster mode: the node running the group
					fields = append(fields, [2]string{"node", str(g["node"])})
				}
				err := printFields(out, append(fields, [][2]string{
					{"strategy", str(g["strategy"])},
					{"start", str(g["start"])}, {"created", str(g["created"])}, {"lag", str(g["lag"])},
					{"in flight", str(g["in_flight"])}, {"delivered", str(g["delivered"])}, {"acked", str(g["acked"])},
					{"redelivered", str(g["redelivered"])}, {"dead-lettered", str(g["dead_lettered"]) + " (to " + str(g["dead_letter"]) + ")"},
					{"oldest unacked", str(g["oldest_unacked_age"])},
				}...))
				if err != nil {
					return err
				}
				fmt.Fprintln(out)
				var rows [][]string
				members, _ := g["members"].([]any)
				for _, m := range members {
					mm, _ := m.(map[string]any)
					node := str(mm["node"]) // connected to another node than the group's
					if node == "" {
						node = str(g["node"])
					}
					rows = append(rows, []string{str(mm["client_id"]), node, str(mm["in_flight"]), str(mm["window"]),
						str(mm["delivered"]), str(mm["acked"]), str(mm["connected_at"])})
				}
				if err := printTable(out, []string{"MEMBER", "NODE", "IN FLIGHT", "WINDOW", "DELIVERED", "ACKED", "CONNECTED"}, rows); err != nil {
					return err
				}
				fmt.Fprintln(out)
				rows = nil
				cursors, _ := g["streams"].([]any)
				for _, s := range cursors {
					ss, _ := s.(map[string]any)
					rows = append(rows, []string{str(ss["stream"]), str(ss["ack_floor"]), str(ss["acked_above_floor"]),
						str(ss["next_offset"]), str(ss["lag"])})
				}
				return printTable(out, []string{"STREAM", "ACK FLOOR", "ACKED ABOVE", "NEXT", "LAG"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&filter, "filter", "", "the group's topic filter (needed when several groups share the name)")
	addOutputFlag(cmd)
	return cmd
}

func groupCreate() *cobra.Command {
	var start, strategy, ackTimeout, deadLetter string
	var maxDeliveries, window int
	cmd := &cobra.Command{
		Use: "create NAME FILTER", Short: "Declare a group ahead of its members", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"name": args[0], "filter": args[1], "start": start}
			if strategy != "" {
				body["strategy"] = strategy
			}
			if ackTimeout != "" {
				body["ack_timeout"] = ackTimeout
			}
			if deadLetter != "" {
				body["dead_letter"] = deadLetter
			}
			if cmd.Flags().Changed("max-deliveries") {
				body["max_deliveries"] = maxDeliveries
			}
			if cmd.Flags().Changed("window") {
				body["window"] = window
			}
			var g map[string]any
			if err := call(cmd, "POST", "/v1/groups", body, &g); err != nil {
				return err
			}
			return printResult(cmd, g, func() error {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "group %s on %s created (start %s, lag %s)\n", args[0], args[1], str(g["start"]), str(g["lag"]))
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&start, "start", "latest", "where to start: earliest, latest, offset:N, time:RFC3339")
	f.StringVar(&strategy, "strategy", "", "round-robin, least-inflight, hash-topic or hash-client")
	f.StringVar(&ackTimeout, "ack-timeout", "", "redeliver after this long without an ack (e.g. 30s)")
	f.IntVar(&maxDeliveries, "max-deliveries", 0, "dead-letter after this many deliveries (0 = never)")
	f.StringVar(&deadLetter, "dead-letter", "", "dead-letter stream ({group} = the group name)")
	f.IntVar(&window, "window", 0, "unacked records per MQTT 3.1.1 member")
	addOutputFlag(cmd)
	return cmd
}

func groupSeek() *cobra.Command {
	var filter, stream string
	cmd := &cobra.Command{
		Use: "seek NAME POSITION", Short: "Move a group to earliest, latest, offset:N or time:RFC3339", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"position": args[1], "filter": filter, "stream": stream}
			var g map[string]any
			if err := call(cmd, "POST", groupPath(args[0], "", "/seek"), body, &g); err != nil {
				return err
			}
			return printResult(cmd, g, func() error {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "group %s moved to %s (lag %s)\n", args[0], args[1], str(g["lag"]))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&filter, "filter", "", "the group's topic filter (needed when several groups share the name)")
	cmd.Flags().StringVar(&stream, "stream", "", "move only in this source stream")
	addOutputFlag(cmd)
	return cmd
}

func groupRm() *cobra.Command {
	var filter string
	cmd := &cobra.Command{
		Use: "rm NAME", Short: "Delete a group and its progress", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", groupPath(args[0], filter, ""), nil, nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "group %s deleted\n", args[0])
			return err
		},
	}
	cmd.Flags().StringVar(&filter, "filter", "", "the group's topic filter (needed when several groups share the name)")
	return cmd
}
