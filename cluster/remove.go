package cluster

import "errors"

// Errors of removing a node from the cluster (`mqstream node remove`).
var (
	// ErrUnknownNode: no member, replica holder or metadata group member
	// has the id.
	ErrUnknownNode = errors.New("no such node in the cluster")
	// ErrNodeAlive: a node must be down before it is removed.
	ErrNodeAlive = errors.New("the node is alive")
	// ErrRemoveSelf: a node does not remove itself.
	ErrRemoveSelf = errors.New("a node cannot remove itself")
	// ErrNeededForMajority: a shard the node replicates has fewer than a
	// majority of its other replicas up; removed, the node could never
	// give it back its majority (forced removal goes ahead all the same).
	ErrNeededForMajority = errors.New("shards would be left without a majority")
	// ErrStandalone: a standalone node has no cluster.
	ErrStandalone = errors.New("this node is not in cluster mode")
)
