package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"
)

func newStreamCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "stream", Short: "Manage streams and their records (through a node's HTTP API)"}
	cmd.AddCommand(streamLs(), streamCreate(), streamDescribe(), streamRm(), streamRead(), streamAppend())
	return cmd
}

func streamLs() *cobra.Command {
	return listCommand(listSpec{
		short: "List streams", path: "/v1/streams", key: "streams",
		header: []string{"NAME", "RECORDS", "BYTES", "FIRST", "LAST", "RETENTION"},
		row: func(s map[string]any) []string {
			return []string{str(s["name"]), str(s["records"]), str(s["bytes"]), str(s["first_offset"]),
				str(s["last_offset"]), retentionString(s["retention"])}
		},
	})
}

func retentionString(v any) string {
	m, _ := v.(map[string]any)
	var parts []string
	for _, k := range []string{"max_age", "max_bytes", "max_records"} {
		if m[k] != nil {
			parts = append(parts, k+"="+str(m[k]))
		}
	}
	if len(parts) == 0 {
		return "forever"
	}
	return strings.Join(parts, ",")
}

func streamCreate() *cobra.Command {
	var maxAge string
	var maxBytes, maxRecords int64
	cmd := &cobra.Command{
		Use: "create NAME", Short: "Create a stream", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"name": args[0], "retention": map[string]any{"max_age": maxAge, "max_bytes": maxBytes, "max_records": maxRecords}}
			var res map[string]any
			if err := call(cmd, "POST", "/v1/streams", body, &res); err != nil {
				return err
			}
			return printResult(cmd, res, func() error {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "stream %s created (retention %s)\n", args[0], retentionString(res["retention"]))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&maxAge, "max-age", "", "drop records older than this (e.g. 168h)")
	cmd.Flags().Int64Var(&maxBytes, "max-bytes", 0, "keep at most this many bytes")
	cmd.Flags().Int64Var(&maxRecords, "max-records", 0, "keep at most this many records")
	addOutputFlag(cmd)
	return cmd
}

// printResult prints res as JSON with -o json, else calls human.
func printResult(cmd *cobra.Command, res any, human func() error) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	if format == "json" {
		return printJSON(cmd.OutOrStdout(), res)
	}
	return human()
}

func streamDescribe() *cobra.Command {
	cmd := &cobra.Command{
		Use: "describe NAME", Short: "Show a stream's counts, bytes, offsets, retention and counters", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s map[string]any
			if err := call(cmd, "GET", "/v1/streams/"+url.PathEscape(args[0]), nil, &s); err != nil {
				return err
			}
			return printResult(cmd, s, func() error {
				ctr, _ := s["counters"].(map[string]any)
				return printFields(cmd.OutOrStdout(), [][2]string{
					{"name", str(s["name"])}, {"records", str(s["records"])}, {"bytes", str(s["bytes"])},
					{"first offset", str(s["first_offset"])}, {"last offset", str(s["last_offset"])},
					{"next offset", str(s["next_offset"])}, {"created", str(s["created_at"])},
					{"last append", str(s["last_append"])}, {"retention", retentionString(s["retention"])},
					{"appended since start", str(ctr["appended_records"])}, {"read since start", str(ctr["read_records"])},
				})
			})
		},
	}
	addOutputFlag(cmd)
	return cmd
}

func streamRm() *cobra.Command {
	return &cobra.Command{
		Use: "rm NAME", Short: "Delete a stream and all its records", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", "/v1/streams/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "stream %s deleted\n", args[0])
			return err
		},
	}
}

func streamRead() *cobra.Command {
	var from uint64
	var fromTime string
	var limit int
	var follow bool
	cmd := &cobra.Command{
		Use: "read NAME", Short: "Print records (one JSON object per line); --follow waits for new ones", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if fromTime != "" {
				q.Set("from_time", fromTime)
			} else if cmd.Flags().Changed("from") {
				q.Set("from_offset", fmt.Sprint(from))
			}
			q.Set("limit", fmt.Sprint(limit))
			path := "/v1/streams/" + url.PathEscape(args[0]) + "/records?" + q.Encode()
			out := cmd.OutOrStdout()
			if !follow {
				var res struct {
					Records []json.RawMessage `json:"records"`
				}
				if err := c.do(cmd.Context(), "GET", path, nil, &res); err != nil {
					return err
				}
				for _, r := range res.Records {
					fmt.Fprintln(out, string(r))
				}
				return nil
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			resp, err := c.send(ctx, "GET", path, nil, "text/event-stream")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 64<<20)
			for sc.Scan() {
				line := sc.Text()
				if data, ok := strings.CutPrefix(line, "data: "); ok {
					fmt.Fprintln(out, data)
				}
			}
			if ctx.Err() != nil {
				return nil
			}
			return sc.Err()
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "first offset (default: the oldest record)")
	cmd.Flags().StringVar(&fromTime, "from-time", "", "first record at or after this RFC 3339 time")
	cmd.Flags().IntVarP(&limit, "limit", "n", 100, "records to print (without --follow)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records until interrupted")
	return cmd
}

func streamAppend() *cobra.Command {
	var topic, encoding, contentType string
	var qos int
	cmd := &cobra.Command{
		Use:   "append NAME [PAYLOAD...]",
		Short: "Append records: each argument, or each line of stdin, is one payload (JSON values are stored as JSON, other text as text)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			payloads := args[1:]
			if len(payloads) == 0 {
				sc := bufio.NewScanner(cmd.InOrStdin())
				sc.Buffer(make([]byte, 64<<10), 64<<20)
				for sc.Scan() {
					if line := sc.Text(); line != "" {
						payloads = append(payloads, line)
					}
				}
				if err := sc.Err(); err != nil {
					return err
				}
			}
			if len(payloads) == 0 {
				return fmt.Errorf("no payload: give them as arguments or on stdin")
			}
			recs := make([]map[string]any, len(payloads))
			for i, p := range payloads {
				r := map[string]any{"qos": qos}
				if topic != "" {
					r["topic"] = topic
				}
				if contentType != "" {
					r["content_type"] = contentType
				}
				switch {
				case encoding != "":
					r["payload"], r["encoding"] = p, encoding
				case json.Valid([]byte(p)):
					r["payload"] = json.RawMessage(p)
				default:
					r["payload"] = p
				}
				recs[i] = r
			}
			var res map[string]any
			if err := c.do(cmd.Context(), "POST", "/v1/streams/"+url.PathEscape(args[0])+"/records", map[string]any{"records": recs}, &res); err != nil {
				return err
			}
			return printResult(cmd, res, func() error {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "appended %s records to %s at offsets %s\n", str(res["count"]), args[0], str(res["offsets"]))
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&topic, "topic", "t", "", "topic of the records (default: the stream name)")
	cmd.Flags().StringVar(&encoding, "encoding", "", "payload encoding: json, text or base64 (default: JSON if it parses, else text)")
	cmd.Flags().StringVar(&contentType, "content-type", "", "MQTT 5 content type to store with the records")
	cmd.Flags().IntVarP(&qos, "qos", "q", 1, "QoS recorded with the records (0, 1 or 2)")
	addOutputFlag(cmd)
	return cmd
}
