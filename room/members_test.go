package room_test

import (
	"testing"
	"time"

	"lepeerchat/room"
)

func TestAuthenticate(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	mustJoin(t, r, tok, "Gone", "m-gone", c.now())
	if _, err := r.Leave("m-gone", c.now(), discardDelay); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, secret string
		ok               bool
	}{
		{"the owner with its secret", ownerID, identity(ownerID).Secret, true},
		{"a guest with its secret", "m-bob", identity("m-bob").Secret, true},
		{"a wrong secret", "m-bob", "guess", false},
		{"an empty secret", "m-bob", "", false},
		{"another member's secret", "m-bob", identity(ownerID).Secret, false},
		{"the secret with different case", "m-bob", "SECRET-OF-M-BOB", false},
		{"an unknown member", "m-stranger", identity("m-stranger").Secret, false},
		{"an empty id and secret", "", "", false},
		{"a member that left for good", "m-gone", identity("m-gone").Secret, false},
		{"a member's name instead of its id", "Bob", identity("m-bob").Secret, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := r.Authenticate(tc.id, tc.secret)
			if !tc.ok {
				wantCode(t, err, room.CodeBadCredentials)
				if m != nil {
					t.Errorf("refused Authenticate returned %+v", m)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.ID != tc.id {
				t.Errorf("Authenticate(%s) = member %s", tc.id, m.ID)
			}
		})
	}
}

func TestLockKeepsNewGuestsOutAndLetsMembersBackIn(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())

	wantCode(t, r.SetLocked("m-bob", true), room.CodeNotOwner)
	wantCode(t, r.SetLocked("m-stranger", true), room.CodeNotOwner)
	if r.Locked {
		t.Fatal("a refused SetLocked locked the room")
	}

	if err := r.SetLocked(ownerID, true); err != nil {
		t.Fatal(err)
	}
	if !r.Locked {
		t.Fatal("the room is not locked")
	}
	_, err := r.Join(tok, "Carol", identity("m-carol"), c.now())
	wantCode(t, err, room.CodeRoomLocked)
	wantCode(t, r.CheckInvite(tok, c.now()), room.CodeRoomLocked)
	for _, id := range []string{ownerID, "m-bob"} {
		if _, err := r.Authenticate(id, identity(id).Secret); err != nil {
			t.Errorf("member %s cannot come back into the locked room: %v", id, err)
		}
	}
	if err := r.Connect("m-bob", room.Conn{Node: "n1", ID: "c1"}); err != nil {
		t.Errorf("member cannot connect to the locked room: %v", err)
	}
	// The owner may still prepare invitations for later.
	if _, err := r.Invite(ownerID, token("i-2"), 0, false, c.now()); err != nil {
		t.Errorf("owner cannot invite while locked: %v", err)
	}
	wantCode(t, r.SetLocked("m-bob", false), room.CodeNotOwner)

	if err := r.SetLocked(ownerID, false); err != nil {
		t.Fatal(err)
	}
	mustJoin(t, r, tok, "Carol", "m-carol", c.now())
	if err := r.SetLocked(ownerID, false); err != nil {
		t.Errorf("unlocking twice = %v, want harmless", err)
	}
}

func TestLeaveFreesTheNameForGood(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())

	empty, err := r.Leave("m-bob", c.now(), discardDelay)
	if err != nil || empty {
		t.Fatalf("Leave = %v, %v; want not empty, no error", empty, err)
	}
	if r.Members["m-bob"] != nil {
		t.Error("the member is still in the room")
	}
	_, err = r.Authenticate("m-bob", identity("m-bob").Secret)
	wantCode(t, err, room.CodeBadCredentials)
	wantCode(t, r.Connect("m-bob", room.Conn{Node: "n1", ID: "c1"}), room.CodeNoSuchMember)

	mustJoin(t, r, tok, "BOB", "m-bob2", c.now())
}

func TestLeaveRemovesOnlyTheMembersConnections(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	connect(t, r, "m-bob", "n2", "c1")
	connect(t, r, ownerID, "n1", "c2")

	if _, err := r.Leave("m-bob", c.now(), discardDelay); err != nil {
		t.Fatal(err)
	}
	if r.Online("m-bob") {
		t.Error("the member that left is still online")
	}
	if len(r.Conns) != 1 || r.Conns[room.Conn{Node: "n1", ID: "c2"}.Key()] != ownerID {
		t.Errorf("connections = %v, want only the owner's", r.Conns)
	}
	if !r.DiscardAt.IsZero() {
		t.Error("the discard clock started while the owner is connected")
	}
}

func TestLeaveStartsTheDiscardClockWhenNoConnectionRemains(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	connect(t, r, "m-bob", "n1", "c1")

	now := c.advance(time.Hour + 7*time.Nanosecond)
	if _, err := r.Leave("m-bob", now, discardDelay); err != nil {
		t.Fatal(err)
	}
	if want := now.Add(discardDelay); !r.DiscardAt.Equal(want) {
		t.Errorf("DiscardAt = %v, want %v", r.DiscardAt, want)
	}
}

func TestLeaveDoesNotRestartARunningDiscardClock(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	connect(t, r, "m-bob", "n1", "c1")
	r.Disconnect(room.Conn{Node: "n1", ID: "c1"}, c.now(), discardDelay)
	started := r.DiscardAt

	if _, err := r.Leave("m-bob", c.advance(10*time.Minute), discardDelay); err != nil {
		t.Fatal(err)
	}
	if !r.DiscardAt.Equal(started) {
		t.Errorf("DiscardAt = %v, want it kept at %v", r.DiscardAt, started)
	}
}

func TestTheLastMemberLeavingEmptiesTheRoom(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	connect(t, r, ownerID, "n1", "c1")
	empty, err := r.Leave(ownerID, c.now(), discardDelay)
	if err != nil {
		t.Fatal(err)
	}
	if !empty {
		t.Error("the last member left but the room is not reported empty")
	}
	if len(r.Members) != 0 || len(r.Conns) != 0 {
		t.Errorf("members %v, connections %v remain", r.Members, r.Conns)
	}
}

func TestLeaveOfAnUnknownMemberIsRefused(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	before := snapshot(t, r)
	empty, err := r.Leave("m-stranger", c.now(), discardDelay)
	wantCode(t, err, room.CodeNoSuchMember)
	if empty {
		t.Error("refused Leave reported an empty room")
	}
	if snapshot(t, r) != before {
		t.Error("refused Leave changed the room")
	}
}

// joinedAfter is a member joining some time after the room's creation.
type joinedAfter struct {
	id    string
	after time.Duration
}

func TestOwnershipPassesToTheLongestStandingMember(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []joinedAfter
		want    string
	}{
		{"the earliest to join, whatever its id",
			[]joinedAfter{{"m-a", 3 * time.Hour}, {"m-z", time.Hour}, {"m-m", 2 * time.Hour}}, "m-z"},
		{"one nanosecond earlier is enough",
			[]joinedAfter{{"m-a", time.Hour}, {"m-z", time.Hour - time.Nanosecond}}, "m-z"},
		{"joined at the same instant: the smallest id",
			[]joinedAfter{{"m-z", time.Hour}, {"m-y", time.Hour}, {"m-x", 2 * time.Hour}}, "m-y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := newRoom(t, c)
			tok := mustInvite(t, r, "i-1", 30*24*time.Hour, false, c.now())
			for _, m := range tc.members {
				mustJoin(t, r, tok, "Name "+m.id, m.id, c.now().Add(m.after))
			}
			empty, err := r.Leave(ownerID, c.now().Add(5*time.Hour), discardDelay)
			if err != nil || empty {
				t.Fatalf("Leave = %v, %v", empty, err)
			}
			if r.Owner != tc.want {
				t.Errorf("owner = %q, want %q", r.Owner, tc.want)
			}
			if _, err := r.Invite(tc.want, token("i-2"), 0, false, c.now()); err != nil {
				t.Errorf("the new owner cannot invite: %v", err)
			}
		})
	}
}

func TestAGuestLeavingKeepsTheOwner(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	if _, err := r.Leave("m-bob", c.now(), discardDelay); err != nil {
		t.Fatal(err)
	}
	if r.Owner != ownerID {
		t.Errorf("owner = %q, want %q", r.Owner, ownerID)
	}
}

func TestKick(t *testing.T) {
	setup := func(t *testing.T) (*room.Room, *clock) {
		c := newClock()
		r := newRoom(t, c)
		tok := mustInvite(t, r, "i-1", 0, false, c.now())
		mustJoin(t, r, tok, "Bob", "m-bob", c.now())
		mustJoin(t, r, tok, "Carol", "m-carol", c.now())
		connect(t, r, "m-bob", "n1", "c1")
		return r, c
	}
	for _, tc := range []struct {
		name, by, target string
		want             room.Code
	}{
		{"a guest may not kick", "m-carol", "m-bob", room.CodeNotOwner},
		{"a guest may not kick the owner", "m-bob", ownerID, room.CodeNotOwner},
		{"a stranger may not kick", "m-stranger", "m-bob", room.CodeNotOwner},
		{"the owner may not kick itself", ownerID, ownerID, room.CodeCannotKickSelf},
		{"the owner may not kick a stranger", ownerID, "m-stranger", room.CodeNoSuchMember},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, c := setup(t)
			before := snapshot(t, r)
			wantCode(t, r.Kick(tc.by, tc.target, c.now(), discardDelay), tc.want)
			if snapshot(t, r) != before {
				t.Error("refused Kick changed the room")
			}
		})
	}

	t.Run("the owner removes a member for good", func(t *testing.T) {
		r, c := setup(t)
		now := c.advance(time.Minute)
		if err := r.Kick(ownerID, "m-bob", now, discardDelay); err != nil {
			t.Fatal(err)
		}
		if r.Members["m-bob"] != nil || r.Online("m-bob") || len(r.Conns) != 0 {
			t.Errorf("Bob is still there: members %v, connections %v", r.Members, r.Conns)
		}
		_, err := r.Authenticate("m-bob", identity("m-bob").Secret)
		wantCode(t, err, room.CodeBadCredentials)
		if want := now.Add(discardDelay); !r.DiscardAt.Equal(want) {
			t.Errorf("DiscardAt = %v, want %v: the kicked member held the last connection", r.DiscardAt, want)
		}
		if r.Owner != ownerID || r.Members["m-carol"] == nil {
			t.Error("kicking Bob touched someone else")
		}
	})
}
