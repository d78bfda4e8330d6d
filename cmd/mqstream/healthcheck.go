package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqstream/mqstream/config"
)

// newHealthcheckCmd is the container health probe: images built FROM
// scratch have no curl, so the binary probes its own node.
func newHealthcheckCmd() *cobra.Command {
	var configPath, probeURL string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 if the local node is ready (GET /readyz answers 200), 1 otherwise",
		Long: `healthcheck GETs the node's /readyz and exits 0 on 200, 1 otherwise,
printing the node's reason (a container HEALTHCHECK shows it).

Without --url the address comes from the configuration the node reads:
defaults, the --config file and MQSTREAM_* variables, so
MQSTREAM_HTTP_LISTEN=:9090 is followed. A wildcard listen host (":8080",
"0.0.0.0:8080") is probed on 127.0.0.1, and HTTPS (http.tls.cert set) is
probed without verifying the certificate: the probe only reads a status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			target := probeURL
			insecure := false
			if target == "" {
				cfg, err := config.Load(configPath, os.Environ(), nil)
				if err != nil {
					return err
				}
				if target, err = readyURL(cfg.HTTP); err != nil {
					return err
				}
				insecure = cfg.HTTP.TLS.Cert != ""
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return probeReady(ctx, cmd.OutOrStdout(), target, insecure)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "the node's YAML configuration file, to find http.listen")
	f.StringVar(&probeURL, "url", "", "URL to probe instead (e.g. http://127.0.0.1:8080/readyz)")
	f.DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}

// readyURL is the /readyz URL of a node's HTTP listener, as seen from the
// same host.
func readyURL(h config.HTTP) (string, error) {
	if h.Listen == "" {
		return "", errors.New("http.listen is empty: the node serves no /readyz to probe")
	}
	host, port, err := net.SplitHostPort(h.Listen)
	if err != nil {
		return "", fmt.Errorf("http.listen %q: %w", h.Listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	if h.TLS.Cert != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/readyz", nil
}

// probeReady GETs target once and returns nil on 200; otherwise an error
// carrying the node's reason.
func probeReady(ctx context.Context, out io.Writer, target string, insecure bool) error {
	client := &http.Client{Transport: &http.Transport{
		Proxy:           nil, // a health probe never goes through HTTP_PROXY
		TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("--url %q: %w", target, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096)) // the status decides; the body only explains
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s %s", resp.Status, msg)
	}
	fmt.Fprintln(out, msg)
	return nil
}
