package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// defaultServer is the HTTP API the CLI talks to when neither --server nor
// MQSTREAM_SERVER says otherwise.
const defaultServer = "http://127.0.0.1:8080"

// apiClient calls a node's HTTP API (/v1/...).
type apiClient struct {
	base string
	http *http.Client
}

// apiError is the API's error shape: {"error": {"code", "message", ...}}.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
}

func (e *apiError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d, column %d)", e.Message, e.Line, e.Column)
	}
	return e.Message
}

// newAPIClient builds a client from the --server flag or MQSTREAM_SERVER.
func newAPIClient(cmd *cobra.Command) (*apiClient, error) {
	server, _ := cmd.Flags().GetString("server")
	if server == "" {
		server = os.Getenv("MQSTREAM_SERVER")
	}
	if server == "" {
		server = defaultServer
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not a URL like %s", server, defaultServer)
	}
	return &apiClient{base: strings.TrimRight(server, "/"), http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// do sends a JSON request and decodes a JSON response into out (if not nil).
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the response: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns the response if its status is 2xx; an
// API error otherwise.
func (c *apiClient) send(ctx context.Context, method, path string, in any, accept string) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) && !errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("cannot reach %s: is `mqstream serve` running? (%v)", c.base, uerr.Err)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var env struct {
			Error *apiError `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &env) == nil && env.Error != nil {
			env.Error.Status = resp.StatusCode
			return nil, env.Error
		}
		return nil, &apiError{Status: resp.StatusCode, Code: "http_error",
			Message: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))}
	}
	return resp, nil
}

// call sends one request to the node named by cmd's flags and decodes the
// answer into out (if not nil).
func call(cmd *cobra.Command, method, path string, body, out any) error {
	c, err := newAPIClient(cmd)
	if err != nil {
		return err
	}
	return c.do(cmd.Context(), method, path, body, out)
}

// listSpec describes an "ls" command: GET path, the list under key in the
// answer, shown as JSON or as a table with header and one row per item.
type listSpec struct {
	short, path, key string
	header           []string
	row              func(item map[string]any) []string
}

// listCommand builds an "ls" command from spec.
func listCommand(spec listSpec) *cobra.Command {
	cmd := &cobra.Command{
		Use: "ls", Short: spec.short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			var res map[string]json.RawMessage
			if err := call(cmd, "GET", spec.path, nil, &res); err != nil {
				return err
			}
			var items []map[string]any
			if raw, ok := res[spec.key]; ok {
				if err := json.Unmarshal(raw, &items); err != nil {
					return fmt.Errorf("%s: %q: %w", spec.path, spec.key, err)
				}
			}
			if format == "json" {
				if items == nil {
					items = []map[string]any{}
				}
				return printJSON(cmd.OutOrStdout(), items)
			}
			rows := [][]string{}
			for _, it := range items {
				rows = append(rows, spec.row(it))
			}
			return printTable(cmd.OutOrStdout(), spec.header, rows)
		},
	}
	addOutputFlag(cmd)
	return cmd
}
