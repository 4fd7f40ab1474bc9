package room_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"lepeerchat/room"
)

// clock is the injected time of a test: a fixed instant moved forward by
// hand, never by sleeping.
type clock struct{ t time.Time }

// newClock starts at an instant with nanoseconds, so that an off-by-one
// rounding to the second would show.
func newClock() *clock {
	return &clock{t: time.Date(2025, time.March, 1, 12, 0, 0, 123456789, time.UTC)}
}

func (c *clock) now() time.Time { return c.t }

func (c *clock) advance(d time.Duration) time.Time {
	c.t = c.t.Add(d)
	return c.t
}

// discardDelay is the operator's "forget an empty room after" setting.
const discardDelay = 30 * time.Minute

// ownerID is the member id of the creator of every test room, whose
// username is ownerName.
const (
	ownerID   = "m-owner"
	ownerName = "Olga"
)

func identity(id string) room.Identity {
	return room.Identity{ID: id, Secret: "secret-of-" + id}
}

func token(id string) room.Token {
	return room.Token{ID: id, Token: "token-of-" + id}
}

// newRoom creates the room every test starts from: "Team room", owned by
// Olga (ownerID), alone, unlocked, with no invitation and no connection.
func newRoom(t *testing.T, c *clock) *room.Room {
	t.Helper()
	r, err := room.Create("r-1", "Team room", ownerName, identity(ownerID), c.now())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return r
}

// mustInvite has the owner issue invitation id and returns its token.
func mustInvite(t *testing.T, r *room.Room, id string, ttl time.Duration, singleUse bool, now time.Time) string {
	t.Helper()
	tok := token(id)
	if _, err := r.Invite(ownerID, tok, ttl, singleUse, now); err != nil {
		t.Fatalf("Invite(%s): %v", id, err)
	}
	return tok.Token
}

// mustJoin has member id join under name with tok.
func mustJoin(t *testing.T, r *room.Room, tok, name, id string, now time.Time) *room.Member {
	t.Helper()
	m, err := r.Join(tok, name, identity(id), now)
	if err != nil {
		t.Fatalf("Join(%q as %s): %v", name, id, err)
	}
	return m
}

// wantCode fails unless err is a refusal of the room rules with code, and
// a reason a person can read.
func wantCode(t *testing.T, err error, code room.Code) {
	t.Helper()
	var e *room.Error
	switch {
	case err == nil:
		t.Fatalf("got no error, want refusal %s", code)
	case !errors.As(err, &e):
		t.Fatalf("got error %v (%T), want a *room.Error %s", err, err, code)
	case e.Code != code:
		t.Fatalf("got refusal %s (%s), want %s", e.Code, e.Message, code)
	case e.Message == "":
		t.Fatalf("refusal %s has no human-readable reason", code)
	}
}

// snapshot is the JSON encoding of r: what a store would persist. Two equal
// snapshots mean no visible change.
func snapshot(t *testing.T, r *room.Room) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("encode room: %v", err)
	}
	return string(b)
}
