package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
)

func newQueryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "query", Short: "Manage continuous queries (create them with mqstream sql: CREATE STREAM name AS SELECT ...)"}
	cmd.AddCommand(queryLs(), queryDescribe(), queryRm(), queryPause("pause"), queryPause("resume"))
	return cmd
}

func queryLs() *cobra.Command {
	return listCommand(listSpec{
		short: "List continuous queries with their progress", path: "/v1/queries", key: "queries",
		header: []string{"QUERY", "STATUS", "SOURCE", "OFFSET", "LAG", "WATERMARK", "OPEN WINDOWS", "IN", "OUT", "LATE", "ERROR"},
		row: func(q map[string]any) []string {
			return []string{str(q["id"]), str(q["status"]), str(q["source"]), str(q["input_offset"]), str(q["lag"]), str(q["watermark"]),
				str(q["open_windows"]), str(q["records_in"]), str(q["rows_out"]), str(q["late"]), str(q["error"])}
		},
	})
}

func queryDescribe() *cobra.Command {
	cmd := &cobra.Command{
		Use: "describe ID", Short: "Show a continuous query: its SQL, progress and counters", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var q map[string]any
			if err := call(cmd, "GET", "/v1/queries/"+url.PathEscape(args[0]), nil, &q); err != nil {
				return err
			}
			return printResult(cmd, q, func() error {
				var fields [][2]string
				for _, k := range []string{"id", "status", "error", "sql", "source", "sink", "created_at", "input_offset", "lag", "lag_seconds", "watermark",
					"open_windows", "groups", "records_in", "rows_out", "late", "skipped", "last_emit", "published", "publish_error"} {
					fields = append(fields, [2]string{k, str(q[k])})
				}
				return printFields(cmd.OutOrStdout(), fields)
			})
		},
	}
	addOutputFlag(cmd)
	return cmd
}

func queryRm() *cobra.Command {
	return &cobra.Command{
		Use: "rm ID", Short: "Terminate a continuous query (its output stream stays)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", "/v1/queries/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "query %s terminated\n", args[0])
			return err
		},
	}
}

// queryPause makes query pause and query resume.
func queryPause(verb string) *cobra.Command {
	short := "Pause a continuous query: it stops, keeping its progress, until resumed (also across restarts)"
	if verb == "resume" {
		short = "Resume a paused continuous query from where it stopped"
	}
	return &cobra.Command{
		Use: verb + " ID", Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var q map[string]any
			if err := call(cmd, "POST", "/v1/queries/"+url.PathEscape(args[0])+"/"+verb, nil, &q); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "query %s %sd: status %s\n", args[0], verb, str(q["status"]))
			return err
		},
	}
}
