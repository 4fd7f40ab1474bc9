package room_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"lepeerchat/room"
)

// busyRoom is a room with every kind of state: members, invitations of each
// sort, connections, a lock and a running clock.
func busyRoom(t *testing.T, c *clock) *room.Room {
	t.Helper()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-multi", 0, false, c.now())
	single := mustInvite(t, r, "i-single", 0, true, c.now())
	mustInvite(t, r, "i-revoked", 0, false, c.now())
	if err := r.Revoke(ownerID, "i-revoked"); err != nil {
		t.Fatal(err)
	}
	mustJoin(t, r, tok, "Bob", "m-bob", c.advance(time.Minute))
	mustJoin(t, r, single, "Zoë", "m-zoe", c.advance(time.Minute))
	if _, err := r.BindKey("m-bob", newKey(t)); err != nil {
		t.Fatal(err)
	}
	connect(t, r, "m-bob", "n1", "c1")
	r.Disconnect(room.Conn{Node: "n1", ID: "c1"}, c.advance(time.Minute), discardDelay)
	connect(t, r, "m-zoe", "n2", "c1")
	r.Disconnect(room.Conn{Node: "n2", ID: "c1"}, c.now(), discardDelay)
	if err := r.SetLocked(ownerID, true); err != nil {
		t.Fatal(err)
	}
	connect(t, r, ownerID, "n1", "c2")
	r.DiscardAt = c.now().Add(time.Hour) // as if loaded mid-way; Clone copies whatever is there
	return r
}

func TestCloneIsEqualToTheOriginal(t *testing.T) {
	r := busyRoom(t, newClock())
	if c := r.Clone(); !reflect.DeepEqual(c, r) {
		t.Errorf("Clone differs:\n%+v\n%+v", c, r)
	}
	if (*room.Room)(nil).Clone() != nil {
		t.Error("Clone of nil is not nil")
	}
}

func TestCloneSharesNothingWithTheOriginal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*room.Room)
	}{
		{"renaming a member", func(c *room.Room) { c.Members["m-bob"].Name = "Robert" }},
		{"adding a member", func(c *room.Room) { c.Members["m-new"] = &room.Member{ID: "m-new"} }},
		{"removing a member", func(c *room.Room) { delete(c.Members, "m-bob") }},
		{"changing a secret hash in place", func(c *room.Room) { c.Members[ownerID].SecretHash[0] ^= 0xff }},
		{"revoking an invitation", func(c *room.Room) { c.Invites["i-multi"].Revoked = true }},
		{"using an invitation", func(c *room.Room) { c.Invites["i-multi"].Used = true }},
		{"changing a token hash in place", func(c *room.Room) { c.Invites["i-multi"].TokenHash[0] ^= 0xff }},
		{"removing an invitation", func(c *room.Room) { delete(c.Invites, "i-multi") }},
		{"adding a connection", func(c *room.Room) { c.Conns["n9/c9"] = "m-bob" }},
		{"removing a connection", func(c *room.Room) { clear(c.Conns) }},
		{"unlocking", func(c *room.Room) { c.Locked = false }},
		{"changing the owner", func(c *room.Room) { c.Owner = "m-bob" }},
		{"stopping the clock", func(c *room.Room) { c.DiscardAt = time.Time{} }},
		{"operations", func(c *room.Room) {
			_ = c.SetLocked(ownerID, false)
			_, _ = c.Join("token-of-i-multi", "Carol", identity("m-carol"), c.Created)
			_, _ = c.Invite(ownerID, token("i-new"), 0, true, c.Created)
			_, _ = c.Leave("m-bob", c.Created, discardDelay)
			c.DropNode("n1", c.Created, discardDelay)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := busyRoom(t, newClock())
			before := snapshot(t, r)
			c := r.Clone()
			tc.mutate(c)
			if snapshot(t, c) == before {
				t.Fatal("test data: the mutation changed nothing")
			}
			if after := snapshot(t, r); after != before {
				t.Errorf("changing the clone changed the original:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestARoomSurvivesItsJSONEncoding(t *testing.T) {
	c := newClock()
	r := busyRoom(t, c)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back room.Room
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Errorf("decoded room differs:\n%+v\n%+v", &back, r)
	}
	// And it still works: members authenticate, invitations are checked.
	if _, err := back.Authenticate("m-bob", identity("m-bob").Secret); err != nil {
		t.Errorf("decoded room: %v", err)
	}
	if err := back.SetLocked(ownerID, false); err != nil {
		t.Fatal(err)
	}
	wantCode(t, back.CheckInvite("token-of-i-revoked", c.now()), room.CodeInviteRevoked)
	wantCode(t, back.CheckInvite("token-of-i-single", c.now()), room.CodeInviteUsed)
	if err := back.CheckInvite("token-of-i-multi", c.now()); err != nil {
		t.Errorf("decoded room: %v", err)
	}
}

func TestRefusalsAreErrorsWithAStableCode(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	_, err := r.Join("nothing", "Bob", identity("m-bob"), c.now())
	var e *room.Error
	if !errors.As(err, &e) {
		t.Fatalf("Join refusal %v is not a *room.Error", err)
	}
	if e.Code != room.CodeInviteInvalid || e.Error() != "invite_invalid: "+e.Message {
		t.Errorf("refusal = %q (code %q)", e.Error(), e.Code)
	}
}
