package signal

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"lepeerchat/room"
)

func TestSecondTabReplacesTheFirst(t *testing.T) {
	ts := startServer(t, "")
	a, b, owner, guest := annAndBob(t, ts)

	b2 := dial(t, ts)
	b2.mustCall("rejoin", guest.creds())
	b.event("session.replaced")
	b.refused("not_in_room", "signal", map[string]any{"to": owner.id, "data": map[string]any{}})
	// The member never looked gone to the others.
	a.noEvent("member.disconnected", 100*time.Millisecond)
	a.noEvent("member.connected", 0)

	a.mustCall("signal", map[string]any{"to": guest.id, "data": map[string]any{"n": 1}})
	b2.event("signal")
	b.noEvent("signal", 100*time.Millisecond)

	// The replaced tab closing does not mark the member gone.
	b.close()
	a.noEvent("member.disconnected", 100*time.Millisecond)
}

func TestKickAndLeaveForGood(t *testing.T) {
	ts := startServer(t, "")
	a, b, c := dial(t, ts), dial(t, ts), dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	token := invite(a, nil)
	bob := joinRoom(b, owner.room, token, "Bob")
	carl := joinRoom(c, owner.room, token, "Carl")

	b.refused("not_owner", "kick", map[string]any{"member": carl.id})
	a.mustCall("kick", map[string]any{"member": bob.id})
	b.event("session.kicked")
	if ev := c.event("member.left"); ev.str("member") != bob.id || ev["kicked"] != true {
		t.Fatalf("member.left = %v", ev)
	}
	b2 := dial(t, ts)
	b2.refused("bad_credentials", "rejoin", bob.creds())

	// Leaving for good frees the name; the owner leaving hands the room on.
	a.mustCall("leave", map[string]any{"forever": true})
	if ev := c.event("member.left"); ev.str("member") != owner.id || ev.str("owner") != carl.id {
		t.Fatalf("member.left = %v, want ownership passed to Carl", ev)
	}
	a.refused("not_in_room", "invite", nil)
	token2 := c.mustCall("invite", nil).obj("invite").str("token")
	d := dial(t, ts)
	joinRoom(d, owner.room, token2, "Ann")

	// The last member leaving discards the room at once.
	c.mustCall("leave", map[string]any{"forever": true})
	d.mustCall("leave", map[string]any{"forever": true})
	if _, err := ts.store.Get(context.Background(), owner.room); err == nil {
		t.Fatal("a room without members is still stored")
	}
}

func TestLeaveTemporarilyKeepsMembership(t *testing.T) {
	ts := startServer(t, "")
	a, b := dial(t, ts), dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	bob := joinRoom(b, owner.room, invite(a, nil), "Bob")
	b.mustCall("leave", nil)
	a.event("member.disconnected")
	b.mustCall("rejoin", bob.creds())
	a.event("member.connected")
}

func TestStatusIsForMembersOnly(t *testing.T) {
	ts := startServer(t, "")
	a := dial(t, ts)
	owner := createRoom(a, "Book club", "Ann")
	wrong := owner
	wrong.secret = "not-the-secret"

	q := dial(t, ts)
	r := q.mustCall("status", map[string]any{"rooms": []any{owner.creds(), wrong.creds(), map[string]any{"room": "gone", "member": "m", "secret": "s"}}})
	rooms, _ := r["rooms"].([]any)
	if len(rooms) != 3 {
		t.Fatalf("status = %v", r)
	}
	alive := msg(rooms[0].(map[string]any))
	if alive["alive"] != true || alive.str("name") != "Book club" || alive.str("self") != "Ann" || alive["online"] != float64(1) {
		t.Fatalf("member's room = %v", alive)
	}
	for i, raw := range rooms[1:] {
		got := msg(raw.(map[string]any))
		if got["alive"] != false || got.str("name") != "" {
			t.Fatalf("room %d revealed to a non-member: %v", i+1, got)
		}
	}
}

func TestEmptyRoomIsDiscardedAfterTheDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	ts := startServer(t, "", func(c *Config) { c.DiscardDelay = delay })
	a := dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	a.close()

	// Coming back within the delay stops the clock.
	time.Sleep(delay / 2)
	a2 := dial(t, ts)
	a2.mustCall("rejoin", owner.creds())
	time.Sleep(delay)
	if _, err := ts.store.Get(context.Background(), owner.room); err != nil {
		t.Fatalf("room with a connection was discarded: %v", err)
	}

	a2.close()
	waitFor(t, "room discarded", func() bool {
		_, err := ts.store.Get(context.Background(), owner.room)
		return err != nil
	})
	dial(t, ts).refused("room_not_found", "rejoin", owner.creds())
}

func TestRestartKeepsRoomsIdentitiesInvitationsAndDeadlines(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, func(c *Config) { c.DiscardDelay = time.Hour })
	a, b := dial(t, ts), dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	token := invite(a, nil)
	bob := joinRoom(b, owner.room, token, "Bob")
	b.close()
	a.event("member.disconnected")
	a.mustCall("lock", map[string]any{"locked": true})

	e := dial(t, ts)
	empty := createRoom(e, "empty", "Eve")
	e.close()
	var deadline time.Time
	waitFor(t, "discard clock started", func() bool {
		r, err := ts.store.Get(context.Background(), empty.room)
		deadline = r.DiscardAt
		return err == nil && !deadline.IsZero()
	})
	ts.stop()

	ts2 := startServer(t, dir, func(c *Config) { c.DiscardDelay = time.Hour })
	r, err := ts2.store.Get(context.Background(), empty.room)
	if err != nil {
		t.Fatalf("room lost in restart: %v", err)
	}
	if !r.DiscardAt.Equal(deadline) || len(r.Conns) != 0 {
		t.Fatalf("after restart: conns %v, discard at %v; want none and %v", r.Conns, r.DiscardAt, deadline)
	}
	// The room whose connections died with the old process has its clock
	// running too.
	if r, _ := ts2.store.Get(context.Background(), owner.room); r.DiscardAt.IsZero() || len(r.Conns) != 0 {
		t.Fatalf("stale connections survived the restart: %v", r.Conns)
	}
	a2 := dial(t, ts2)
	if got := a2.mustCall("rejoin", owner.creds()); got.obj("room")["locked"] != true {
		t.Fatalf("lock lost in restart: %v", got)
	}
	dial(t, ts2).mustCall("rejoin", bob.creds())
	a2.mustCall("lock", map[string]any{"locked": false})
	joinRoom(dial(t, ts2), owner.room, token, "Carl")
}

func TestShutdownClosesSessionsWithGoingAway(t *testing.T) {
	ts := startServer(t, "")
	c := dial(t, ts)
	createRoom(c, "r", "Ann")
	go ts.stop()
	if code := closeStatus(t, c); code != websocket.StatusGoingAway {
		t.Fatalf("close status %v, want going away", code)
	}
}

// waitFor polls cond until it holds, failing after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartForgetsConnectionsOfACrashedRun(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	ts := startServer(t, dir, func(c *Config) { c.Now, c.DiscardDelay = clk.Now, time.Hour })
	a := dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	// As if the process died with the connection open: record one that
	// no session will ever close, from this node and from another.
	_, err := ts.store.Update(context.Background(), owner.room, func(r *room.Room) (*room.Room, error) {
		r.Conns["main/999"] = owner.id
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.stop()

	clk.Advance(time.Minute)
	ts2 := startServer(t, dir, func(c *Config) { c.Now, c.DiscardDelay = clk.Now, time.Hour })
	r, err := ts2.store.Get(context.Background(), owner.room)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Conns) != 0 || r.DiscardAt.IsZero() {
		t.Fatalf("conns %v, discard at %v: the dead run's connection kept the room alive", r.Conns, r.DiscardAt)
	}
}
