package signal

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"lepeerchat/room"
	"lepeerchat/store"
)

// clusterNode is this server's part in a cluster, when its store is shared
// with other nodes (store.Cluster): it keeps every room's discard clock
// running on every node, takes over the connections of a dead node, lets go
// of its own connections when the others took it for dead, and drops its
// ended connections that the store could not record as ended.
type clusterNode struct{ s *Server }

var _ store.ClusterHandler = clusterNode{}

// DiscardAt arms this node's timer for a deadline set by any node.
func (c clusterNode) DiscardAt(roomID string, at time.Time) { c.s.reaper.schedule(roomID, at) }

// NodeDown drops a dead node's connections from its rooms, as that node
// does itself when it starts again, and tells each room's other members
// who is gone. The members themselves reconnect to a living node and
// rejoin.
func (c clusterNode) NodeDown(ctx context.Context, node string, rooms []string) error {
	prefix := node + "/"
	for _, id := range rooms {
		if err := c.s.dropConns(ctx, id, func(key string) bool { return strings.HasPrefix(key, prefix) }); err != nil {
			return err
		}
	}
	return nil
}

// Tidy drops from the rooms this node's connections that have ended. Only
// those whose end could not be recorded are left: they are older than
// every session now open, and none of those.
func (c clusterNode) Tidy(ctx context.Context, rooms []string) error {
	s := c.s
	s.mu.Lock()
	live := make(map[string]bool, len(s.sessions))
	for sess := range s.sessions {
		live[sess.key.Key()] = true
	}
	last := s.nextConn
	s.mu.Unlock()
	prefix := s.cfg.Node + "/"
	ended := func(key string) bool {
		id, ok := strings.CutPrefix(key, prefix)
		if !ok || live[key] {
			return false
		}
		// A session opened since the list was taken is not in it.
		n, err := strconv.ParseUint(id, 10, 64)
		return err == nil && n <= last
	}
	for _, id := range rooms {
		// Most rooms have nothing to drop: a read tells, cheaper than
		// an update.
		r, err := s.cfg.Store.Get(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(slices.Collect(maps.Keys(r.Conns)), ended) {
			continue
		}
		if err := s.dropConns(ctx, id, ended); err != nil {
			return err
		}
	}
	return nil
}

// dropConns forgets the room's connections whose keys match, starting its
// discard clock if none is left, and tells the other members about those
// who are no longer online.
func (s *Server) dropConns(ctx context.Context, id string, match func(key string) bool) error {
	cfg := &s.cfg
	var gone []string
	r, err := cfg.Store.Update(ctx, id, func(r *room.Room) (*room.Room, error) {
		gone = gone[:0]
		if r == nil {
			return nil, errUnchanged
		}
		held := map[string]bool{}
		for k, member := range r.Conns {
			if match(k) {
				node, connID, _ := strings.Cut(k, "/")
				r.Disconnect(room.Conn{Node: node, ID: connID}, cfg.Now(), cfg.DiscardDelay)
				held[member] = true
			}
		}
		if len(held) == 0 {
			return nil, errUnchanged
		}
		for member := range held {
			if !r.Online(member) {
				gone = append(gone, member)
			}
		}
		return r, nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	if err != nil {
		return err
	}
	s.reaper.track(r)
	for _, member := range gone {
		m := r.Members[member]
		if m == nil {
			continue
		}
		msg := busFrame(busClient, encode(memberEvent{
			header: header{Type: "member.disconnected"},
			Member: viewMember(m, false),
		}))
		sent := map[string]bool{}
		for _, to := range r.Conns {
			if !sent[to] {
				sent[to] = true
				if _, err := cfg.Bus.Send(ctx, r.ID, to, msg); err != nil {
					cfg.Logger.Warn("bus send failed", "room", r.ID, "err", err)
				}
			}
		}
	}
	return nil
}

// Evicted closes every connection of this node: the other nodes took it
// for dead and dropped them from their rooms. Their clients reconnect and
// rejoin, which records them again.
func (c clusterNode) Evicted() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	for sess := range c.s.sessions {
		sess.close(closeGoingAway, "server lost its place in the cluster: reconnect")
	}
}
