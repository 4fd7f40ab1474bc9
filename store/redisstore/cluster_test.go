package redisstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"lepeerchat/room"
	"lepeerchat/store"
)

// handler records what the cluster tells a node, and drops a dead node's
// connections as the server does.
type handler struct {
	s *Store

	mu        sync.Mutex
	deadlines map[string]time.Time
	downs     []string
	evicted   int
	failDown  error
}

func newHandler(s *Store) *handler { return &handler{s: s, deadlines: map[string]time.Time{}} }

func (h *handler) DiscardAt(id string, at time.Time) {
	h.mu.Lock()
	h.deadlines[id] = at
	h.mu.Unlock()
}

func (h *handler) NodeDown(ctx context.Context, node string, rooms []string) error {
	h.mu.Lock()
	h.downs = append(h.downs, node)
	fail := h.failDown
	h.mu.Unlock()
	if fail != nil {
		return fail
	}
	for _, id := range rooms {
		_, err := h.s.Update(ctx, id, func(r *room.Room) (*room.Room, error) {
			if r == nil {
				return nil, nil
			}
			r.DropNode(node, time.Now(), time.Hour)
			return r, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *handler) Tidy(context.Context, []string) error { return nil }

func (h *handler) Evicted() {
	h.mu.Lock()
	h.evicted++
	h.mu.Unlock()
}

func (h *handler) deadline(id string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.deadlines[id]
	return at, ok
}

func connected(id string, conns map[string]string) *room.Room {
	return &room.Room{ID: id, Members: map[string]*room.Member{"m1": {ID: "m1"}, "m2": {ID: "m2"}}, Conns: conns}
}

// TestSweepDropsADeadNodeAndEvictsItIfItComesBack plays the takeover step
// by step: a node whose announcement expired has its connections dropped by
// another node; when it announces itself again it learns it was swept.
func TestSweepDropsADeadNodeAndEvictsItIfItComesBack(t *testing.T) {
	srv := sharedRedis(t)
	p := newPrefix()
	s := open(t, srv.URL(), p, func(o *Options) { o.NodeTTL = time.Minute })
	defer s.Close()
	ctx := t.Context()
	ha, hb := newHandler(s), newHandler(s)
	a := &membership{s: s, node: "a", token: "ta", h: ha}
	b := &membership{s: s, node: "b", token: "tb", h: hb}
	for _, m := range []*membership{a, b} {
		if err := m.beat(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	set(t, s, connected("r1", map[string]string{"a/1": "m1", "b/1": "m2"}))
	set(t, s, connected("r2", map[string]string{"a/2": "m2"}))

	b.sweep(ctx)
	if len(hb.downs) != 0 {
		t.Fatalf("a living node was taken for dead: %v", hb.downs)
	}

	// a falls silent: its announcement expires.
	s.rdb.Del(ctx, p+"node:a")
	b.sweep(ctx)
	if !slices.Equal(hb.downs, []string{"a"}) {
		t.Fatalf("NodeDown calls = %v, want [a]", hb.downs)
	}
	for _, id := range []string{"r1", "r2"} {
		r, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for k := range r.Conns {
			if k[:2] == "a/" {
				t.Fatalf("%s still has a's connection: %v", id, r.Conns)
			}
		}
	}
	wantSet(t, s.rdb, p+"conns:a")
	wantSet(t, s.rdb, p+"nodes", "b")
	// Nothing left to do for a.
	b.sweep(ctx)
	if len(hb.downs) != 1 {
		t.Fatalf("a swept again: %v", hb.downs)
	}

	// a was only cut off: it comes back and learns it was swept, once.
	if err := a.beat(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := a.beat(ctx, false); err != nil {
		t.Fatal(err)
	}
	if ha.evicted != 1 {
		t.Fatalf("a told %d times that it was evicted, want 1", ha.evicted)
	}
	if hb.evicted != 0 {
		t.Fatal("the sweeper was evicted")
	}
}

// TestUpdateForADeadNodeStopsWhenItComesBack checks the fence: an update
// made for a node taken for dead is refused, without calling fn, once the
// node has announced itself again.
func TestUpdateForADeadNodeStopsWhenItComesBack(t *testing.T) {
	srv := sharedRedis(t)
	p := newPrefix()
	s := open(t, srv.URL(), p)
	defer s.Close()
	ctx := context.WithValue(t.Context(), deadNodeKey{}, "a")
	set(t, s, connected("r1", map[string]string{"a/1": "m1"}))
	drop := func(r *room.Room) (*room.Room, error) { r.DropNode("a", time.Now(), time.Hour); return r, nil }
	if _, err := s.Update(ctx, "r1", drop); err != nil {
		t.Fatalf("update for a silent node: %v", err)
	}

	set(t, s, connected("r1", map[string]string{"a/1": "m1"}))
	(&membership{s: s, node: "a", token: "t", h: newHandler(s)}).beat(t.Context(), true)
	called := false
	_, err := s.Update(ctx, "r1", func(r *room.Room) (*room.Room, error) { called = true; return drop(r) })
	if !errors.Is(err, errNodeAlive) || called {
		t.Fatalf("update for a node that came back: %v (fn called: %v), want errNodeAlive without fn", err, called)
	}
	if r, _ := s.Get(t.Context(), "r1"); len(r.Conns) != 1 {
		t.Fatalf("the node's connection was dropped although it came back: %v", r.Conns)
	}
}

// TestJoinReportsEveryDeadline checks that a node learns the deadlines set
// before it joined and those any node sets afterwards, and that leaving
// withdraws its announcement.
func TestJoinReportsEveryDeadline(t *testing.T) {
	srv := sharedRedis(t)
	p := newPrefix()
	a, b := open(t, srv.URL(), p), open(t, srv.URL(), p)
	defer a.Close()
	defer b.Close()
	ctx := t.Context()
	before := time.Date(2030, 1, 1, 0, 0, 0, 123_456_789, time.UTC)
	r := connected("early", nil)
	r.DiscardAt = before
	set(t, a, r)

	h := newHandler(b)
	leave, err := b.Join(ctx, "b", h)
	if err != nil {
		t.Fatal(err)
	}
	if at, ok := h.deadline("early"); !ok || at.Before(before) || at.Sub(before) >= time.Millisecond {
		t.Fatalf("deadline set before joining = %v, %v; want %v to the millisecond, not earlier", at, ok, before)
	}
	if n, _ := b.rdb.Exists(ctx, p+"node:b").Result(); n != 1 {
		t.Fatal("joined node not announced")
	}

	after := time.Now().Add(time.Hour).Round(0)
	r = connected("late", nil)
	r.DiscardAt = after
	set(t, a, r)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if at, ok := h.deadline("late"); ok {
			if !at.Equal(after) {
				t.Fatalf("deadline published = %v, want %v exactly", at, after)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deadline set by another node not reported")
		}
		time.Sleep(5 * time.Millisecond)
	}

	leave()
	leave()
	if n, _ := b.rdb.Exists(ctx, p+"node:b").Result(); n != 0 {
		t.Fatal("node still announced after leaving")
	}
}

// TestJoinFailsWhenRedisIsDown checks that a node does not start without
// its cluster.
func TestJoinFailsWhenRedisIsDown(t *testing.T) {
	srv := sharedRedis(t)
	s := open(t, srv.URL(), newPrefix())
	defer s.Close()
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.Join(ctx, "n", newHandler(s)); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Join with redis down: %v, want ErrUnavailable", err)
	}
	if _, err := s.Join(ctx, "a/b", newHandler(s)); err == nil {
		t.Fatal("Join accepted a node name with '/'")
	}
}
