package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect a node"}
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
	return cmd
}
