package main

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect a node and the cluster's members"}
	cmd.AddCommand(listCommand(listSpec{
		short: "List the cluster's members (a standalone node lists itself)", path: "/v1/cluster", key: "members",
		header: memberHeader, row: memberRow,
	}))
	status := &cobra.Command{
		Use: "status", Short: "Show the node's id, version, uptime, listeners and counts", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var n map[string]any
			if err := call(cmd, "GET", "/v1/node", nil, &n); err != nil {
				return err
			}
			return printResult(cmd, n, func() error {
				fields := [][2]string{{"node", str(n["id"])}, {"version", str(n["version"])}, {"ready", str(n["ready"])},
					{"started", str(n["started_at"])}, {"uptime", str(n["uptime_seconds"]) + "s"}}
				for _, section := range []string{"listeners", "counts", "ingest"} {
					m, _ := n[section].(map[string]any)
					keys := make([]string, 0, len(m))
					for k := range m {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						fields = append(fields, [2]string{fmt.Sprintf("%s.%s", section, k), str(m[k])})
					}
				}
				return printFields(cmd.OutOrStdout(), fields)
			})
		},
	}
	addOutputFlag(status)
	cmd.AddCommand(status)
	var force bool
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node that is down from the cluster for good (its replicas are dropped; a node that joins later takes its place)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/cluster/nodes/" + url.PathEscape(args[0])
			if force {
				path += "?force=true"
			}
			if err := call(cmd, "DELETE", path, nil, nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "node %s removed from the cluster\n", args[0])
			return err
		},
	}
	remove.Flags().BoolVar(&force, "force", false, "remove the node even if a shard it replicates has fewer than a majority of its other replicas up (that shard may then never have a majority again)")
	cmd.AddCommand(remove)
	return cmd
}

var memberHeader = []string{"NODE", "STATUS", "MQTT", "HTTP", "GOSSIP", "RPC", "VERSION"}

func memberRow(m map[string]any) []string {
	return []string{str(m["id"]), str(m["status"]), str(m["mqtt"]), str(m["http"]), str(m["gossip"]), str(m["rpc"]), str(m["version"])}
}

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect the cluster"}
	status := &cobra.Command{
		Use: "status", Short: "Show the cluster's name, its members and shards", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cl struct {
				Name     string           `json:"name"`
				Members  []map[string]any `json:"members"`
				Shards   []map[string]any `json:"shards"`
				Metadata map[string]any   `json:"metadata"`
			}
			if err := call(cmd, "GET", "/v1/cluster", nil, &cl); err != nil {
				return err
			}
			whole := map[string]any{"name": cl.Name, "members": cl.Members, "shards": cl.Shards}
			if cl.Metadata != nil {
				whole["metadata"] = cl.Metadata
			}
			return printResult(cmd, whole, func() error {
				out := cmd.OutOrStdout()
				name := cl.Name
				if name == "" {
					name = "(standalone)"
				}
				fields := [][2]string{{"cluster", name}, {"members", fmt.Sprint(len(cl.Members))}, {"shards", fmt.Sprint(len(cl.Shards))}}
				if cl.Metadata != nil {
					fields = append(fields, [2]string{"layout version", str(cl.Metadata["layout_version"])},
						[2]string{"metadata leader", str(cl.Metadata["leader"])})
				}
				if err := printFields(out, fields); err != nil {
					return err
				}
				fmt.Fprintln(out)
				rows := [][]string{}
				for _, m := range cl.Members {
					rows = append(rows, memberRow(m))
				}
				if err := printTable(out, memberHeader, rows); err != nil || len(cl.Shards) == 0 {
					return err
				}
				fmt.Fprintln(out)
				rows = rows[:0]
				for _, sh := range cl.Shards {
					rows = append(rows, shardRow(sh))
				}
				return printTable(out, []string{"SHARD", "LEADER", "TERM", "REPLICAS", "APPLIED", "LAG"}, rows)
			})
		},
	}
	addOutputFlag(status)
	cmd.AddCommand(status)
	return cmd
}

// shardRow is one shard of /v1/cluster as a table row.
func shardRow(sh map[string]any) []string {
	var replicas []string
	if rs, ok := sh["replicas"].([]any); ok {
		for _, r := range rs {
			replicas = append(replicas, fmt.Sprint(r))
		}
	}
	leader := fmt.Sprint(sh["leader"])
	if leader == "" {
		leader = "(none)"
	}
	num := func(k string) string {
		if f, ok := sh[k].(float64); ok {
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
		return ""
	}
	lag := num("lag")
	if lag == "" {
		lag = "?" // fewer than two replicas answered
	}
	return []string{num("id"), leader, num("term"), strings.Join(replicas, ","), num("applied"), lag}
}
