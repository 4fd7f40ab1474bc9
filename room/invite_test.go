package room_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"lepeerchat/room"
)

func TestInviteRecordsAHashedExpiringInvitation(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	in, err := r.Invite(ownerID, token("i-1"), 2*time.Hour, true, c.now())
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != "i-1" || !in.Created.Equal(c.now()) || !in.Expires.Equal(c.now().Add(2*time.Hour)) ||
		!in.SingleUse || in.Used || in.Revoked {
		t.Errorf("invitation = %+v", in)
	}
	if r.Invites["i-1"] != in {
		t.Error("the invitation is not recorded in the room")
	}
}

func TestInviteLifetime(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		want time.Duration // lifetime given; 0 when refused
	}{
		{"no lifetime means the 24-hour default", 0, 24 * time.Hour},
		{"one minute is the shortest", time.Minute, time.Minute},
		{"just under one minute is refused", time.Minute - time.Nanosecond, 0},
		{"one second is refused", time.Second, 0},
		{"a negative lifetime is refused", -time.Hour, 0},
		{"a week", 7 * 24 * time.Hour, 7 * 24 * time.Hour},
		{"30 days is the longest", 30 * 24 * time.Hour, 30 * 24 * time.Hour},
		{"just over 30 days is refused", 30*24*time.Hour + time.Nanosecond, 0},
		{"a year is refused", 365 * 24 * time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := newRoom(t, c)
			in, err := r.Invite(ownerID, token("i-1"), tc.ttl, false, c.now())
			if tc.want == 0 {
				wantCode(t, err, room.CodeInvalidTTL)
				if in != nil || len(r.Invites) != 0 {
					t.Error("a refused invitation was recorded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := in.Expires.Sub(in.Created); got != tc.want {
				t.Errorf("invitation lasts %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOnlyTheOwnerInvites(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	for _, by := range []string{"m-bob", "m-stranger", "", ownerName} {
		t.Run("by "+by, func(t *testing.T) {
			_, err := r.Invite(by, token("i-2"), 0, false, c.now())
			wantCode(t, err, room.CodeNotOwner)
			if r.Invites["i-2"] != nil {
				t.Error("a refused invitation was recorded")
			}
		})
	}
}

func TestOwnershipBelongsToTheMemberIDNotTheName(t *testing.T) {
	c := newClock()
	r := newRoom(t, c) // Olga, ownerID
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.advance(time.Minute))

	if _, err := r.Leave(ownerID, c.advance(time.Minute), discardDelay); err != nil {
		t.Fatal(err)
	}
	if r.Owner != "m-bob" {
		t.Fatalf("owner = %q, want Bob who is the only one left", r.Owner)
	}
	// The old owner's name is free again; whoever takes it gets nothing else.
	mustJoin(t, r, tok, ownerName, "m-impostor", c.now())

	_, err := r.Invite("m-impostor", token("i-2"), 0, false, c.now())
	wantCode(t, err, room.CodeNotOwner)
	wantCode(t, r.SetLocked("m-impostor", true), room.CodeNotOwner)
	wantCode(t, r.Revoke("m-impostor", "i-1"), room.CodeNotOwner)
	wantCode(t, r.Kick("m-impostor", "m-bob", c.now(), discardDelay), room.CodeNotOwner)
	// Nor does the old owner's id, now that it has left.
	_, err = r.Invite(ownerID, token("i-2"), 0, false, c.now())
	wantCode(t, err, room.CodeNotOwner)

	if _, err := r.Invite("m-bob", token("i-2"), 0, false, c.now()); err != nil {
		t.Errorf("the new owner cannot invite: %v", err)
	}
}

func TestInviteRefusesBeyondMaxInvites(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	for i := range room.MaxInvites {
		mustInvite(t, r, fmt.Sprintf("i-%02d", i), time.Hour, false, c.now())
	}
	_, err := r.Invite(ownerID, token("i-extra"), time.Hour, false, c.now())
	wantCode(t, err, room.CodeTooManyInvites)
	if len(r.Invites) != room.MaxInvites {
		t.Errorf("room holds %d invitations, want %d", len(r.Invites), room.MaxInvites)
	}
}

func TestExpiredInvitationsDoNotCountAndMakeRoomWhenNeeded(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	// Half of the invitations last an hour, the other half a day.
	for i := range room.MaxInvites {
		ttl := time.Hour
		if i%2 == 1 {
			ttl = 24 * time.Hour
		}
		mustInvite(t, r, fmt.Sprintf("i-%02d", i), ttl, false, c.now())
	}
	_, err := r.Invite(ownerID, token("i-extra"), time.Hour, false, c.advance(time.Hour-time.Nanosecond))
	wantCode(t, err, room.CodeTooManyInvites)

	now := c.advance(time.Nanosecond) // the short ones expire now
	if _, err := r.Invite(ownerID, token("i-extra"), time.Hour, false, now); err != nil {
		t.Fatalf("Invite after half expired = %v", err)
	}
	if len(r.Invites) > room.MaxInvites {
		t.Errorf("room holds %d invitations, more than %d", len(r.Invites), room.MaxInvites)
	}
	if got, want := len(r.ActiveInvites(now)), room.MaxInvites/2+1; got != want {
		t.Errorf("%d active invitations, want %d", got, want)
	}
	for i := 1; i < room.MaxInvites; i += 2 {
		if id := fmt.Sprintf("i-%02d", i); r.Invites[id] == nil {
			t.Errorf("active invitation %s was forgotten to make room", id)
		}
	}
}

func TestPruneForgetsExactlyTheInvitationsExpiredLongAgo(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	mustInvite(t, r, "i-short", time.Minute, false, c.now())
	mustInvite(t, r, "i-long", time.Hour, false, c.now())
	mustInvite(t, r, "i-revoked", time.Hour, false, c.now())
	if err := r.Revoke(ownerID, "i-revoked"); err != nil {
		t.Fatal(err)
	}

	r.Prune(c.advance(time.Minute))
	if r.Invites["i-short"] == nil {
		t.Fatal("an invitation is forgotten at its expiry: its holder would be told \"invalid\", not \"expired\"")
	}
	r.Prune(c.advance(room.ExpiredInviteGrace - time.Nanosecond))
	if r.Invites["i-short"] == nil {
		t.Fatal("an invitation is forgotten before the grace period ends")
	}
	r.Prune(c.advance(time.Nanosecond))
	if r.Invites["i-short"] != nil {
		t.Error("an invitation is kept after the grace period")
	}
	if r.Invites["i-long"] == nil || r.Invites["i-revoked"] == nil {
		t.Error("an invitation expired for less than the grace period was forgotten")
	}
}

func TestRevokedAndUsedInvitationsDoNotCountAgainstMaxInvites(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	var single string
	for i := range room.MaxInvites {
		tok := mustInvite(t, r, fmt.Sprintf("i-%02d", i), time.Hour, i == 0, c.advance(time.Second))
		if i == 0 {
			single = tok
		}
	}
	_, err := r.Invite(ownerID, token("i-extra1"), time.Hour, false, c.now())
	wantCode(t, err, room.CodeTooManyInvites)

	// Revoking one makes room, as the refusal says.
	if err := r.Revoke(ownerID, "i-05"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Invite(ownerID, token("i-extra1"), time.Hour, false, c.now()); err != nil {
		t.Fatalf("Invite after a revocation = %v", err)
	}
	_, err = r.Invite(ownerID, token("i-extra2"), time.Hour, false, c.now())
	wantCode(t, err, room.CodeTooManyInvites)

	// So does using a single-use one.
	mustJoin(t, r, single, "Bob", "m-bob", c.now())
	if _, err := r.Invite(ownerID, token("i-extra2"), time.Hour, false, c.now()); err != nil {
		t.Fatalf("Invite after a single-use invitation was used = %v", err)
	}
	if len(r.Invites) > room.MaxInvites {
		t.Errorf("room holds %d invitations, more than %d", len(r.Invites), room.MaxInvites)
	}
	if got := len(r.ActiveInvites(c.now())); got != room.MaxInvites {
		t.Errorf("%d active invitations, want %d", got, room.MaxInvites)
	}
}

func TestRevokedInvitationsStayPreciseWhileThereIsRoom(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", time.Hour, false, c.now())
	if err := r.Revoke(ownerID, "i-1"); err != nil {
		t.Fatal(err)
	}
	for i := range room.MaxInvites - 1 {
		mustInvite(t, r, fmt.Sprintf("i-more-%02d", i), time.Hour, false, c.now())
	}
	_, err := r.Join(tok, "Bob", identity("m-bob"), c.now())
	wantCode(t, err, room.CodeInviteRevoked)
}

func TestActiveInvitesListsUsableInvitationsOldestFirst(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	start := c.now()
	mustInvite(t, r, "i-c", 2*time.Hour, false, start)
	mustInvite(t, r, "i-b", time.Hour, false, start.Add(time.Minute))
	mustInvite(t, r, "i-a", time.Hour, false, start.Add(time.Minute)) // same age as i-b: by id
	mustInvite(t, r, "i-revoked", time.Hour, false, start.Add(2*time.Minute))
	used := mustInvite(t, r, "i-used", time.Hour, true, start.Add(3*time.Minute))
	mustInvite(t, r, "i-d", time.Hour, true, start.Add(4*time.Minute))
	mustInvite(t, r, "i-expired", time.Minute, false, start.Add(4*time.Minute))
	if err := r.Revoke(ownerID, "i-revoked"); err != nil {
		t.Fatal(err)
	}
	mustJoin(t, r, used, "Bob", "m-bob", start.Add(5*time.Minute))

	var ids []string
	for _, in := range r.ActiveInvites(start.Add(5 * time.Minute)) {
		ids = append(ids, in.ID)
	}
	if want := []string{"i-c", "i-a", "i-b", "i-d"}; !slices.Equal(ids, want) {
		t.Errorf("ActiveInvites = %v, want %v", ids, want)
	}
	if r.Invites["i-expired"] == nil {
		t.Error("ActiveInvites forgot the expired invitation: listing must not change the room")
	}
}

func TestRevoke(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())

	wantCode(t, r.Revoke("m-bob", "i-1"), room.CodeNotOwner)
	wantCode(t, r.Revoke("m-stranger", "i-1"), room.CodeNotOwner)
	if r.Invites["i-1"].Revoked {
		t.Fatal("a refused Revoke revoked the invitation")
	}
	wantCode(t, r.Revoke(ownerID, "i-nothing"), room.CodeNoSuchInvite)
	wantCode(t, r.Revoke(ownerID, tok), room.CodeNoSuchInvite) // by id, not by token

	if err := r.Revoke(ownerID, "i-1"); err != nil {
		t.Fatal(err)
	}
	_, err := r.Join(tok, "Carol", identity("m-carol"), c.now())
	wantCode(t, err, room.CodeInviteRevoked)
	if err := r.Revoke(ownerID, "i-1"); err != nil {
		t.Errorf("revoking twice = %v, want harmless", err)
	}
	if len(r.ActiveInvites(c.now())) != 0 {
		t.Error("a revoked invitation is listed as active")
	}
}
