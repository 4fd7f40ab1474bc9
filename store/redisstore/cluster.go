package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"lepeerchat/store"
)

// How the nodes keep the rooms' housekeeping going when one of them dies:
//
//   - Every node announces itself in node:<name>, a key that expires
//     after NodeTTL and that it renews every NodeTTL/4.
//   - Every change of a room keeps conns:<node> (the rooms where node holds
//     connections) in step, in the same transaction.
//   - Every node looks at the nodes that hold connections; one whose
//     announcement has expired is dead: the looker marks it swept and hands
//     its rooms to the server (ClusterHandler.NodeDown), which drops its
//     connections exactly as the node itself would on restart. Those
//     updates watch the dead node's key, so a node that comes back in the
//     middle keeps its new connections. A node looks only after its own
//     announcement has held for a whole NodeTTL and sweepGrace, so that
//     after Redis itself was down, nobody is swept before it could
//     announce itself again.
//   - A node that finds itself swept (it was cut off from Redis while the
//     others went on) tells the server to close its connections, which
//     then reconnect and are recorded again (ClusterHandler.Evicted).
//   - A connection that ends while Redis is unreachable cannot be recorded
//     as ended; a few seconds after Redis is back (when the other nodes'
//     subscriptions are back too, so that they hear of it), and every
//     minute, the node lists the rooms that record its connections and has
//     the server drop those that have ended (ClusterHandler.Tidy).
//   - Every discard deadline is in the discard index and published on
//     deadlines when set; every node arms a timer for each (and reads the
//     whole index again when its subscription connection comes back), so
//     a clock runs out on time even when the node that started it is gone.
//     Racing discards are harmless: the first deletes, the others find
//     nothing to do.

// deadNodeKey is the context key under which NodeDown's updates carry the
// node taken for dead.
type deadNodeKey struct{}

// sweptTTL is how long the mark of a swept node waits for that node to come
// back and read it.
const sweptTTL = 7 * 24 * time.Hour

// resyncEvery is how often a node reads every deadline again, in case a
// notification was lost without the connection being seen to fail.
const resyncEvery = 5 * time.Minute

// sweepGrace is added to NodeTTL before a node that has just reached Redis
// (at its start, or after Redis was down) takes others for dead: the time
// they may need to reach Redis again (the client retries a failed dial
// once a second) and announce themselves.
const sweepGrace = 3 * time.Second

// tidyEvery is how often a node looks for its own ended connections still
// recorded in the rooms (it also looks a few seconds after Redis is back).
const tidyEvery = time.Minute

// markSwept marks KEYS[2] (swept:<node>) if KEYS[1] (node:<node>) is
// absent, and says whether it did.
var markSwept = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1`)

// forgetNode removes ARGV[1] from KEYS[2] (nodes) once it holds nothing
// (KEYS[3], conns:<node>, is empty) and is not announced (KEYS[1]).
var forgetNode = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SCARD', KEYS[3]) > 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
return 1`)

// leaveNode deletes KEYS[1] (node:<node>) if it still holds ARGV[1], this
// run's token.
var leaveNode = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Join implements store.Cluster.
func (s *Store) Join(ctx context.Context, node string, h store.ClusterHandler) (leave func(), err error) {
	if node == "" || strings.Contains(node, "/") {
		return nil, fmt.Errorf("redisstore: join: invalid node name %q", node)
	}
	hb := s.hub()
	if hb == nil {
		return nil, unavailable("join", errClosed)
	}
	var tok [12]byte
	rand.Read(tok[:])
	m := &membership{s: s, node: node, token: hex.EncodeToString(tok[:]), h: h, stop: make(chan struct{})}
	// Listen to deadlines before reading them all, so that none set in
	// between is missed.
	unsubscribe := hb.subscribe(s.k.deadlines(), m.deadline)
	if err := m.beat(ctx, true); err != nil {
		unsubscribe()
		return nil, err
	}
	if err := m.resync(ctx); err != nil {
		unsubscribe()
		return nil, err
	}
	m.healthy = time.Now()
	m.wg.Go(func() { m.run(hb.reconnected) })
	var once sync.Once
	return func() {
		once.Do(func() {
			close(m.stop)
			m.wg.Wait()
			unsubscribe()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			leaveNode.Run(ctx, s.rdb, []string{s.k.node(node)}, m.token)
		})
	}, nil
}

// membership is one node's part in the cluster.
type membership struct {
	s     *Store
	node  string
	token string // this run's value of node:<name>
	h     store.ClusterHandler
	stop  chan struct{}
	wg    sync.WaitGroup

	// Owned by run's goroutine:
	healthy  time.Time // since when every announcement succeeded; zero after a failure
	impostor bool      // another process announces itself under this name
}

func (m *membership) run(reconnected <-chan struct{}) {
	beat := time.NewTicker(m.s.ttl / 4)
	defer beat.Stop()
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	tidy := time.NewTicker(tidyEvery)
	defer tidy.Stop()
	resyncDue, tidyDue := false, false
	for {
		select {
		case <-m.stop:
			return
		case <-beat.C:
			ctx, cancel := context.WithTimeout(context.Background(), m.s.ttl/2)
			if err := m.beat(ctx, false); err != nil {
				if !m.healthy.IsZero() {
					m.s.logger.Warn("cannot announce this node in redis", "node", m.node, "err", err)
				}
				m.healthy = time.Time{}
			} else if m.healthy.IsZero() {
				// Back after a failure: connections that ended
				// meanwhile may still be recorded.
				m.healthy = time.Now()
				tidyDue = true
			} else if time.Since(m.healthy) >= m.s.ttl+sweepGrace {
				m.sweep(ctx)
			}
			cancel()
		case <-reconnected:
			// The deadlines published while the subscription was down
			// are lost: read them all, until it works.
			resyncDue = true
		case <-resync.C:
			resyncDue = true
		case <-tidy.C:
			tidyDue = true
		}
		if resyncDue {
			resyncDue = !m.resyncNow()
		}
		// After an outage, give the other nodes' subscriptions time to
		// come back first, so that they hear who left meanwhile.
		if tidyDue && !m.healthy.IsZero() && time.Since(m.healthy) >= sweepGrace {
			tidyDue = !m.tidyNow()
		}
	}
}

// beat renews the node's announcement and checks whether the others took
// it for dead meanwhile.
func (m *membership) beat(ctx context.Context, first bool) error {
	if m.s.closed.Load() {
		return unavailable("announce node", errClosed)
	}
	var prev *redis.StatusCmd
	var swept *redis.StringCmd
	_, err := m.s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		prev = p.SetArgs(ctx, m.s.k.node(m.node), m.token, redis.SetArgs{TTL: m.s.ttl, Get: true})
		swept = p.GetDel(ctx, m.s.k.swept(m.node))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("announce node", err)
	}
	old, err := prev.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("announce node", err)
	}
	impostor := !first && old != "" && old != m.token
	if impostor && !m.impostor {
		m.s.logger.Error("another server announces itself under this node's name: give every node its own -node", "node", m.node)
	}
	m.impostor = impostor
	if !first && swept.Err() == nil {
		m.s.logger.Warn("the other nodes took this node for dead while it could not reach redis; closing its connections so that they reconnect", "node", m.node)
		m.h.Evicted()
	}
	return nil
}

// sweep hands the rooms of every dead node to the handler.
func (m *membership) sweep(ctx context.Context) {
	rdb, k := m.s.rdb, m.s.k
	nodes, err := rdb.SMembers(ctx, k.nodes()).Result()
	if err != nil {
		return
	}
	var others []string
	for _, n := range nodes {
		if n != m.node {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return
	}
	alive := make([]*redis.IntCmd, len(others))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range others {
			alive[i] = p.Exists(ctx, k.node(n))
		}
		return nil
	}); err != nil {
		return
	}
	for i, n := range others {
		if alive[i].Val() > 0 {
			continue
		}
		if err := m.takeOver(ctx, n); err != nil {
			if errors.Is(err, errNodeAlive) {
				continue
			}
			m.s.logger.Warn("drop the connections of a dead node", "node", n, "err", err)
		}
	}
}

// takeOver drops the connections of the silent node n from its rooms.
func (m *membership) takeOver(ctx context.Context, n string) error {
	rdb, k := m.s.rdb, m.s.k
	rooms, err := rdb.SMembers(ctx, k.conns(n)).Result()
	if err != nil {
		return err
	}
	if len(rooms) > 0 {
		marked, err := markSwept.Run(ctx, rdb, []string{k.node(n), k.swept(n)}, int64(sweptTTL/time.Second)).Int()
		if err != nil || marked == 0 {
			return err
		}
		m.s.logger.Warn("a node stopped announcing itself: dropping its connections", "node", n, "rooms", len(rooms))
		if err := m.h.NodeDown(context.WithValue(ctx, deadNodeKey{}, n), n, rooms); err != nil {
			return err
		}
		// Rooms deleted meanwhile may linger in the index.
		exists := make([]*redis.IntCmd, len(rooms))
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range rooms {
				exists[i] = p.Exists(ctx, k.room(id))
			}
			return nil
		}); err != nil {
			return err
		}
		var gone []any
		for i, id := range rooms {
			if exists[i].Val() == 0 {
				gone = append(gone, id)
			}
		}
		if len(gone) > 0 {
			rdb.SRem(ctx, k.conns(n), gone...)
		}
	}
	return forgetNode.Run(ctx, rdb, []string{k.node(n), k.nodes(), k.conns(n)}, n).Err()
}

// deadline passes on a deadline published by any node. It runs on the
// subscription connection's goroutine.
func (m *membership) deadline(payload []byte) {
	ns, id, ok := strings.Cut(string(payload), " ")
	if !ok {
		return
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return
	}
	m.h.DiscardAt(id, time.Unix(0, n))
}

// resync passes on every deadline in the index.
func (m *membership) resync(ctx context.Context) error {
	all, err := m.s.rdb.ZRangeWithScores(ctx, m.s.k.discard(), 0, -1).Result()
	if err != nil {
		return unavailable("read discard deadlines", err)
	}
	for _, z := range all {
		if id, ok := z.Member.(string); ok {
			m.h.DiscardAt(id, time.UnixMilli(int64(z.Score)))
		}
	}
	return nil
}

// tidyNow hands the rooms that record this node's connections to the
// handler, reporting success.
func (m *membership) tidyNow() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rooms, err := m.s.rdb.SMembers(ctx, m.s.k.conns(m.node)).Result()
	m.s.logger.Debug("looking for this node's ended connections", "rooms", len(rooms), "err", err)
	if err == nil && len(rooms) > 0 {
		err = m.h.Tidy(ctx, rooms)
	}
	if err != nil {
		m.s.logger.Warn("drop this node's ended connections; trying again", "err", err)
		return false
	}
	return true
}

// resyncNow is resync on its own, reporting success.
func (m *membership) resyncNow() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.resync(ctx); err != nil {
		m.s.logger.Warn("read discard deadlines; trying again", "err", err)
		return false
	}
	return true
}
