package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/gctune"
	"github.com/mqstream/mqstream/node"
)

func newServeCmd() *cobra.Command {
	var configPath string
	var printConfig bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node (embedded defaults: MQTT :1883, WebSocket :8083, HTTP :8080, data in ./data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, os.Environ(), boundFlags(cmd.Flags()))
			if err != nil {
				return err
			}
			if printConfig {
				out, err := cfg.YAML()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			return serve(cfg)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "YAML configuration file (see mqstream.example.yaml)")
	f.BoolVar(&printConfig, "print-config", false, "print the effective configuration and exit")
	f.String("data-dir", "", "data directory (node.data_dir)")
	f.String("node-id", "", "node id (node.id)")
	f.String("mqtt", "", "MQTT/TCP listen address (mqtt.tcp)")
	f.String("ws", "", "MQTT over WebSocket listen address (mqtt.websocket)")
	f.String("http", "", "HTTP listen address (http.listen)")
	f.String("sync", "", "sync policy: always, interval or none (storage.sync)")
	f.String("log-level", "", "debug, info, warn or error (log.level)")
	f.String("max-query-state", "", "pause a continuous query whose state grows past this size, e.g. 256MiB; 0 = no limit (queries.max_state_bytes)")
	return cmd
}

// flagKeys maps serve's flags to configuration keys.
var flagKeys = map[string]string{
	"data-dir":        "node.data_dir",
	"node-id":         "node.id",
	"mqtt":            "mqtt.tcp",
	"ws":              "mqtt.websocket",
	"http":            "http.listen",
	"sync":            "storage.sync",
	"log-level":       "log.level",
	"max-query-state": "queries.max_state_bytes",
}

func boundFlags(fs *pflag.FlagSet) map[string]*pflag.Flag {
	out := map[string]*pflag.Flag{}
	for name, key := range flagKeys {
		if f := fs.Lookup(name); f != nil {
			out[key] = f
		}
	}
	return out
}

func serve(cfg config.Config) error {
	logger := cfg.Logger()
	gc, err := applyRuntime(cfg.Runtime, logger)
	if err != nil {
		return err
	}
	if gc != nil {
		gc.Start() // before the node serves its metrics, which report the target
	}
	n, err := node.Open(cfg, logger)
	if err != nil {
		return err
	}
	if err := n.Metrics().Register(gctune.Collector()); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		sig := <-sigs
		logger.Info("signal received, shutting down", "signal", sig.String())
		stop()
		// A second signal skips the graceful part.
		<-sigs
		fmt.Fprintln(os.Stderr, "mqstream: second signal, exiting now")
		os.Exit(2)
	}()
	if gc != nil {
		go gc.Run(ctx)
	}
	return n.Run(ctx, 30*time.Second)
}

// applyRuntime sets the collector target and memory limit unless the
// standard GOGC / GOMEMLIMIT environment variables already did. With
// runtime.gc_percent: auto it returns the controller that serve runs.
func applyRuntime(r config.Runtime, logger *slog.Logger) (*gctune.Controller, error) {
	if os.Getenv("GOMEMLIMIT") == "" && r.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(r.MemoryLimit))
	}
	if os.Getenv("GOGC") != "" {
		return nil, nil
	}
	percent, auto, err := r.GCPercent.Parse()
	if err != nil {
		return nil, fmt.Errorf("runtime.gc_percent: %w", err)
	}
	if !auto {
		debug.SetGCPercent(percent)
		return nil, nil
	}
	return gctune.New(gctune.Options{Logger: logger})
}
