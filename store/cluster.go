package store

import (
	"context"
	"time"
)

// Cluster is offered by a Store that several server nodes share (the Redis
// store). It keeps the housekeeping of the rooms going when any one node
// dies: each node learns every discard deadline, wherever it was set, and
// the connections that a dead node held are dropped by the living.
//
// A single-node Store does not implement it; the server then arms its own
// discard timers only.
type Cluster interface {
	// Join announces node as alive and keeps it so, reporting the
	// cluster's events to h, until leave is called. It fails, announcing
	// nothing, when the store cannot be reached. NodeDown, Evicted and
	// Tidy are called from one goroutine; DiscardAt may be called from
	// another at the same time, and must not block.
	Join(ctx context.Context, node string, h ClusterHandler) (leave func(), err error)
}

// ClusterHandler is told what a node must do for the others.
type ClusterHandler interface {
	// DiscardAt tells that the room's discard clock runs out at at. It is
	// called for every room whose clock runs when the node joins or its
	// link to the store comes back, then for every clock started or
	// moved by any node. A clock stopped since is not reported: the
	// handler checks the room when the time comes.
	DiscardAt(roomID string, at time.Time)
	// NodeDown tells that node has stopped announcing itself: the handler
	// drops node's connections from the rooms listed (room.Room.DropNode)
	// and tells their other members. It must make its store updates with
	// ctx, which makes the store refuse them should node come back
	// meanwhile. An error leaves the rest for the next round.
	NodeDown(ctx context.Context, node string, rooms []string) error
	// Evicted tells that the other nodes took this node for dead while it
	// was cut off from the store, and dropped its connections from the
	// rooms: the handler closes them, so that their clients reconnect
	// and are recorded again.
	Evicted()
	// Tidy lists the rooms where the store records connections of this
	// node. It is called after the store was unreachable, and now and
	// then: the handler drops from them the connections that have ended
	// but whose end could not be recorded, so that they do not keep
	// their members online and their rooms alive for ever.
	Tidy(ctx context.Context, rooms []string) error
}
