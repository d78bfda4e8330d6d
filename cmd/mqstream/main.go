// Command mqstream is the MQTT-native streaming database: one binary that
// serves a node (serve) and administers it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mqstream:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "mqstream",
		Short:         "MQTT-native streaming database",
		Long:          "mqstream stores every MQTT publish durably in ordered streams and serves them to consumer groups, SQL and REST.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("server", "", "HTTP API of the node to talk to (default $MQSTREAM_SERVER or "+defaultServer+")")
	root.AddCommand(newServeCmd(), newVersionCmd(), newBenchCmd(), newStreamCmd(), newGroupCmd(), newNodeCmd(), newClusterCmd(), newUserCmd(), newSQLCmd(), newQueryCmd(), newHealthcheckCmd())
	return root
}
