// Package redisstore is the Store, Bus and Cluster of several server nodes
// sharing one Redis: the rooms live in Redis, every change is an optimistic
// transaction, and messages for members travel by Redis pub/sub to whichever
// node holds their connection.
//
// # Keys
//
// Every key and channel name starts with Options.Prefix (default "lpc:"):
//
//	room:<id>        string  the room, as the JSON encoding of room.Room
//	rooms            set     the id of every room
//	discard          zset    room id → its discard time (Unix ms), for rooms whose clock runs
//	conns:<node>     set     ids of the rooms where node holds a connection
//	nodes            set     the nodes that may hold connections (conns:<node> not yet cleaned)
//	node:<node>      string  the node's announcement: a token of its run, expiring after NodeTTL
//	swept:<node>     string  set when the others dropped node's connections while it was silent
//	revoked:<member> string  "1" while the member is revoked: it expires when the revocation ends
//	deadlines        channel "<unix ns> <room id>" each time a discard clock starts or moves
//	bus:<n>:<room>:<member>  channel  messages for a member (n is the length of the room id)
//
// The room, its entry in rooms and discard, and the conns:<node> indexes are
// written by one MULTI/EXEC under WATCH of the room's key, so they never
// disagree and a failure writes nothing.
package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"lepeerchat/room"
	"lepeerchat/store"
)

// Options tunes a Store. Zero values take the defaults documented on each
// field.
type Options struct {
	// Prefix starts every key and channel name, so that several
	// deployments can share one Redis. Default "lpc:".
	Prefix string
	// NodeTTL is how long a node's announcement lasts: a node that has
	// not renewed it for that long is taken for dead and its connections
	// are dropped from the rooms. It is renewed every NodeTTL/4. Default
	// 10 s.
	NodeTTL time.Duration
	// Logger receives the store's warnings: Redis lost and back, nodes
	// taken for dead. Default: discarded. The Redis client's own messages
	// (which it logs process-wide) go, at debug level, to the first
	// Logger given to Open.
	Logger *slog.Logger
}

// clientLog passes the Redis client's messages to a slog.Logger.
type clientLog struct{ l *slog.Logger }

func (c clientLog) Printf(ctx context.Context, format string, v ...any) {
	c.l.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

var clientLogOnce sync.Once

// errClosed is the cause of every failure of a Store used after Close.
var errClosed = errors.New("store is closed")

// errNodeAlive refuses an update made for a node taken for dead (see
// store.ClusterHandler.NodeDown) once that node has announced itself again.
var errNodeAlive = errors.New("the node is alive again")

// maxAttempts bounds the optimistic retries of one Update, for a caller
// whose context has no deadline.
const maxAttempts = 1000

// Store is a store.Store, and through Bus and Join a store.Bus and a
// store.Cluster, kept in Redis. It is safe for concurrent use.
type Store struct {
	rdb    *redis.Client
	k      keys
	ttl    time.Duration
	logger *slog.Logger
	closed atomic.Bool

	hubMu sync.Mutex // guards h against Close
	h     *hub
	pub   *publisher
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Cluster = (*Store)(nil)
)

// Open connects to the Redis at url (redis://[user:password@]host:port/db,
// rediss:// for TLS, unix:///path) and checks that it answers. Every failure
// to reach it wraps store.ErrUnavailable; a malformed url does not.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	// Pub/sub and transactions as Redis has always spoken them; no
	// cluster-maintenance handshake, which plain Redis does not know.
	if o.Protocol == 0 {
		o.Protocol = 2
	}
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	o.ContextTimeoutEnabled = true
	// Fail fast when Redis is down, so that clients hear "unavailable"
	// well within the server's 5 s bound on one request.
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 3 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 3 * time.Second
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = 2
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 2
	}
	if opts.Prefix == "" {
		opts.Prefix = "lpc:"
	}
	if opts.NodeTTL <= 0 {
		opts.NodeTTL = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	} else {
		clientLogOnce.Do(func() { redis.SetLogger(clientLog{opts.Logger}) })
	}
	s := &Store{rdb: redis.NewClient(o), k: keys{opts.Prefix}, ttl: opts.NodeTTL, logger: opts.Logger}
	s.pub = &publisher{rdb: s.rdb}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.rdb.Close()
		return nil, unavailable("connect to "+o.Addr, err)
	}
	return s, nil
}

// Get returns a copy of the room, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*room.Room, error) {
	if s.closed.Load() {
		return nil, unavailable(fmt.Sprintf("get room %q", id), errClosed)
	}
	data, err := s.rdb.Get(ctx, s.k.room(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, unavailable(fmt.Sprintf("get room %q", id), err)
	}
	r, err := decode(data)
	if err != nil {
		return nil, unavailable(fmt.Sprintf("decode room %q", id), err)
	}
	return r, nil
}

// IDs returns the ids of every room, sorted.
func (s *Store) IDs(ctx context.Context) ([]string, error) {
	if s.closed.Load() {
		return nil, unavailable("list rooms", errClosed)
	}
	ids, err := s.rdb.SMembers(ctx, s.k.rooms()).Result()
	if err != nil {
		return nil, unavailable("list rooms", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// Update applies fn to the room in an optimistic transaction: it reads the
// room under WATCH, calls fn, and writes the result with MULTI/EXEC, which
// Redis refuses if any node changed the room meanwhile; fn then runs again
// on the newer state. So the updates of one room by every node are
// serialised, and exactly one of two racing changes that exclude each
// other (two joins under one name, a join and a lock) wins. A result
// encoded exactly as the stored room is not written again.
func (s *Store) Update(ctx context.Context, id string, fn store.UpdateFunc) (*room.Room, error) {
	if id == "" {
		return nil, errors.New("redisstore: update: empty room id")
	}
	op := fmt.Sprintf("update room %q", id)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("redisstore: %s: %w", op, err)
		}
		if s.closed.Load() {
			return nil, unavailable(op, errClosed)
		}
		next, done, err := s.try(ctx, id, fn)
		if done {
			return next, err
		}
		if !errors.Is(err, redis.TxFailedErr) {
			return nil, unavailable(op, err)
		}
		if attempt >= maxAttempts {
			return nil, unavailable(op, errors.New("too many concurrent changes"))
		}
		// Another node changed the room first. Retry at once, then
		// with a growing random pause, so that many racing writers
		// do not keep colliding.
		if attempt >= 2 {
			pause := time.Duration(rand.Int64N(int64(min(time.Millisecond<<min(attempt-2, 6), 50*time.Millisecond)) + 1))
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
}

// try makes one attempt at Update. done reports that next and err are
// Update's answer; otherwise err is why the attempt failed (TxFailedErr:
// the room changed meanwhile).
func (s *Store) try(ctx context.Context, id string, fn store.UpdateFunc) (next *room.Room, done bool, err error) {
	key := s.k.room(id)
	watched := []string{key}
	// A change made for a node taken for dead is made only while that
	// node stays silent: its announcement is watched too.
	dead, _ := ctx.Value(deadNodeKey{}).(string)
	if dead != "" {
		watched = append(watched, s.k.node(dead))
	}
	var answer *room.Room
	var answerErr error
	answered := false
	err = s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		old, err := tx.Get(ctx, key).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			old = nil
		case err != nil:
			return err
		}
		if dead != "" {
			n, err := tx.Exists(ctx, s.k.node(dead)).Result()
			if err != nil {
				return err
			}
			if n > 0 {
				answered, answerErr = true, fmt.Errorf("redisstore: update room %q for node %q: %w", id, dead, errNodeAlive)
				return nil
			}
		}
		var cur *room.Room
		if old != nil {
			if cur, err = decode(old); err != nil {
				answered, answerErr = true, unavailable(fmt.Sprintf("decode room %q", id), err)
				return nil
			}
		}
		next, err := fn(cur.Clone())
		if err != nil {
			answered, answerErr = true, err
			return nil
		}
		if next == nil && cur == nil {
			answered = true
			return nil
		}
		var data []byte
		if next != nil {
			if next.ID != id {
				answered, answerErr = true, fmt.Errorf("redisstore: update room %q: the new state has id %q", id, next.ID)
				return nil
			}
			if data, err = json.Marshal(next); err != nil {
				answered, answerErr = true, fmt.Errorf("redisstore: encode room %q: %w", id, err)
				return nil
			}
			if bytes.Equal(data, old) {
				answered, answer = true, next
				return nil
			}
		}
		cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			s.write(ctx, p, id, cur, next, data)
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range cmds {
			if err := c.Err(); err != nil {
				return err
			}
		}
		answered, answer = true, next
		return nil
	}, watched...)
	if answered {
		return answer, true, answerErr
	}
	if err == nil {
		err = errors.New("transaction ended without an answer")
	}
	return nil, false, err
}

// write queues the commands that replace cur by next (nil: delete it) and
// keep the indexes in step.
func (s *Store) write(ctx context.Context, p redis.Pipeliner, id string, cur, next *room.Room, data []byte) {
	if next == nil {
		p.Del(ctx, s.k.room(id))
		p.SRem(ctx, s.k.rooms(), id)
		if !cur.DiscardAt.IsZero() {
			p.ZRem(ctx, s.k.discard(), id)
		}
		for n := range nodesOf(cur) {
			p.SRem(ctx, s.k.conns(n), id)
		}
		return
	}
	p.Set(ctx, s.k.room(id), data, 0)
	if cur == nil {
		p.SAdd(ctx, s.k.rooms(), id)
	}
	switch {
	case !next.DiscardAt.IsZero() && (cur == nil || !cur.DiscardAt.Equal(next.DiscardAt)):
		p.ZAdd(ctx, s.k.discard(), redis.Z{Score: float64(ceilMilli(next.DiscardAt)), Member: id})
		p.Publish(ctx, s.k.deadlines(), strconv.FormatInt(next.DiscardAt.UnixNano(), 10)+" "+id)
	case next.DiscardAt.IsZero() && cur != nil && !cur.DiscardAt.IsZero():
		p.ZRem(ctx, s.k.discard(), id)
	}
	was, is := nodesOf(cur), nodesOf(next)
	for n := range is {
		if !was[n] {
			p.SAdd(ctx, s.k.conns(n), id)
			p.SAdd(ctx, s.k.nodes(), n)
		}
	}
	for n := range was {
		if !is[n] {
			p.SRem(ctx, s.k.conns(n), id)
		}
	}
}

// nodesOf returns the nodes holding a connection in r.
func nodesOf(r *room.Room) map[string]bool {
	if r == nil || len(r.Conns) == 0 {
		return nil
	}
	nodes := make(map[string]bool, 2)
	for k := range r.Conns {
		if node, _, ok := strings.Cut(k, "/"); ok {
			nodes[node] = true
		}
	}
	return nodes
}

// ceilMilli is t in Unix milliseconds, rounded up, so that a deadline read
// back from the discard index is never early.
func ceilMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.UnixNano()%int64(time.Millisecond) > 0 {
		ms++
	}
	return ms
}

// Revoke records that memberID is revoked until until: a key that Redis
// expires then. In one transaction, SET NX PXAT creates it and PEXPIREAT GT
// moves the expiry of an existing key later, never earlier; an until
// already past writes nothing that lasts.
func (s *Store) Revoke(ctx context.Context, memberID string, until time.Time) error {
	if s.closed.Load() {
		return unavailable(fmt.Sprintf("revoke member %q", memberID), errClosed)
	}
	key, ms := s.k.revoked(memberID), until.UnixMilli()
	cmds, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "SET", key, 1, "NX", "PXAT", ms)
		p.Do(ctx, "PEXPIREAT", key, ms, "GT")
		return nil
	})
	if err == nil || errors.Is(err, redis.Nil) {
		// A SET NX that found the key answers nil; look past it.
		err = nil
		for _, c := range cmds {
			if cerr := c.Err(); cerr != nil && !errors.Is(cerr, redis.Nil) {
				err = cerr
				break
			}
		}
	}
	if err != nil {
		return unavailable(fmt.Sprintf("revoke member %q", memberID), err)
	}
	return nil
}

// Revoked reports whether memberID is revoked now: whether its key has not
// expired yet.
func (s *Store) Revoked(ctx context.Context, memberID string) (bool, error) {
	if s.closed.Load() {
		return false, unavailable(fmt.Sprintf("check revocation of member %q", memberID), errClosed)
	}
	n, err := s.rdb.Exists(ctx, s.k.revoked(memberID)).Result()
	if err != nil {
		return false, unavailable(fmt.Sprintf("check revocation of member %q", memberID), err)
	}
	return n > 0, nil
}

// Close stops the store's subscriptions and closes its connections. Every
// later call fails with store.ErrUnavailable, except Close, which does
// nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pub.close()
	s.hubMu.Lock()
	h := s.h
	s.hubMu.Unlock()
	if h != nil {
		h.close()
	}
	if err := s.rdb.Close(); err != nil {
		return unavailable("close", err)
	}
	return nil
}

// hub returns the store's subscription connection, started on first use,
// or nil after Close.
func (s *Store) hub() *hub {
	s.hubMu.Lock()
	defer s.hubMu.Unlock()
	if s.closed.Load() {
		return nil
	}
	if s.h == nil {
		s.h = newHub(s.rdb, s.logger)
	}
	return s.h
}

// decode reads a room from its stored JSON encoding.
func decode(data []byte) (*room.Room, error) {
	r := new(room.Room)
	if err := json.Unmarshal(data, r); err != nil {
		return nil, err
	}
	return r, nil
}

// unavailable wraps a failure of Redis, or the use of a closed Store, so
// that errors.Is(err, store.ErrUnavailable) holds and the message says what
// was being done.
func unavailable(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w: %w", op, store.ErrUnavailable, err)
}

// keys names the keys and channels, under a prefix.
type keys struct{ p string }

func (k keys) room(id string) string    { return k.p + "room:" + id }
func (k keys) rooms() string            { return k.p + "rooms" }
func (k keys) discard() string          { return k.p + "discard" }
func (k keys) deadlines() string        { return k.p + "deadlines" }
func (k keys) nodes() string            { return k.p + "nodes" }
func (k keys) conns(node string) string { return k.p + "conns:" + node }
func (k keys) node(node string) string  { return k.p + "node:" + node }
func (k keys) swept(node string) string { return k.p + "swept:" + node }
func (k keys) revoked(member string) string {
	return k.p + "revoked:" + member
}
func (k keys) member(roomID, memberID string) string {
	// The length keeps "a:b"+"c" and "a"+"b:c" apart: ids come from
	// clients and may hold anything.
	return k.p + "bus:" + strconv.Itoa(len(roomID)) + ":" + roomID + ":" + memberID
}
