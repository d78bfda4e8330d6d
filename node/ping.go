package node

import (
	"context"
	"errors"

	"github.com/mqstream/mqstream/cluster/rpcmux"
)

// pingService answers with nothing: membership calls it over the
// cluster's RPC connections (TCP) when a member missed a UDP ping
// (cluster.Options.PingFallback).
const pingService = "cluster.ping"

// servePing registers pingService.
func (n *Node) servePing() {
	n.repl.mux.Handle(pingService, func(context.Context, string, []byte) ([]byte, error) { return nil, nil })
}

// answersOverTCP reports whether the node whose RPC address is rpc
// answers a call. Any answer counts, an error the handler returned too:
// a node of an earlier version, without pingService, answers that it has
// no such service.
func (n *Node) answersOverTCP(ctx context.Context, rpc string) bool {
	_, err := n.repl.mux.Call(ctx, rpc, pingService, nil)
	return err == nil || errors.Is(err, rpcmux.ErrRemote)
}
