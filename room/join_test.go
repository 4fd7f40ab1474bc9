package room_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"lepeerchat/room"
)

func TestCreateMakesTheCreatorOwnerAndOnlyMember(t *testing.T) {
	c := newClock()
	r, err := room.Create("r-1", "  Team room ", " Olga\n", identity(ownerID), c.now())
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "r-1" || r.Name != "Team room" || !r.Created.Equal(c.now()) {
		t.Errorf("room = %q %q created %v", r.ID, r.Name, r.Created)
	}
	if r.Owner != ownerID {
		t.Errorf("owner = %q, want the creator's member id %q", r.Owner, ownerID)
	}
	if r.Locked {
		t.Error("a new room is locked")
	}
	if len(r.Members) != 1 {
		t.Fatalf("a new room has %d members, want 1", len(r.Members))
	}
	m := r.Members[ownerID]
	if m == nil || m.ID != ownerID || m.Name != "Olga" || !m.Joined.Equal(c.now()) {
		t.Errorf("creator = %+v", m)
	}
	if len(r.ActiveInvites(c.now())) != 0 || len(r.Conns) != 0 {
		t.Error("a new room has invitations or connections")
	}
}

func TestCreateRefusesBadNames(t *testing.T) {
	long := strings.Repeat("n", room.MaxNameLen+1)
	for _, tc := range []struct {
		name, roomName, user string
	}{
		{"empty room name", "", "Olga"},
		{"blank room name", " \u200b ", "Olga"},
		{"too long room name", long, "Olga"},
		{"room name with a control", "Team\x00room", "Olga"},
		{"empty username", "Team room", ""},
		{"invisible username", "Team room", "\u3164"},
		{"too long username", "Team room", long},
		{"username with a bidi override", "Team room", "Olga\u202eevil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := room.Create("r-1", tc.roomName, tc.user, identity(ownerID), newClock().now())
			wantCode(t, err, room.CodeInvalidName)
			if r != nil {
				t.Errorf("refused Create returned a room")
			}
		})
	}
}

func TestSecretsAndTokensAreStoredOnlyAsHashes(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())

	for id, m := range r.Members {
		secret := identity(id).Secret
		if len(m.SecretHash) != 32 || bytes.Equal(m.SecretHash, []byte(secret)) {
			t.Errorf("member %s keeps %q, want a 32-byte hash of its secret", id, m.SecretHash)
		}
	}
	in := r.Invites["i-1"]
	if len(in.TokenHash) != 32 || bytes.Equal(in.TokenHash, []byte(tok)) {
		t.Errorf("invitation keeps %q, want a 32-byte hash of its token", in.TokenHash)
	}

	encoded := snapshot(t, r)
	for _, secret := range []string{identity(ownerID).Secret, identity("m-bob").Secret, tok} {
		if strings.Contains(encoded, secret) {
			t.Errorf("the stored room contains the secret %q:\n%s", secret, encoded)
		}
	}
}

func TestJoinWithAValidInvitationAddsAMember(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	joined := c.advance(time.Hour)

	m, err := r.Join(tok, "  Zoe\u0308 ", identity("m-zoe"), joined)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "m-zoe" || m.Name != "Zoë" || !m.Joined.Equal(joined) {
		t.Errorf("new member = %+v, want m-zoe named Zoë joined at %v", m, joined)
	}
	if r.Members["m-zoe"] != m {
		t.Error("the new member is not in the room")
	}
	if r.Owner != ownerID {
		t.Errorf("joining changed the owner to %q", r.Owner)
	}
	if _, err := r.Authenticate("m-zoe", identity("m-zoe").Secret); err != nil {
		t.Errorf("the new member cannot authenticate: %v", err)
	}
}

// joinCase is a room prepared in some state, and the guest that then tries
// to enter it with a token under a username.
type joinCase struct {
	name  string
	setup func(t *testing.T, r *room.Room, c *clock) (tok string)
	user  string
	want  room.Code // "" for success
}

// joinCases are shared by Join and CheckInvite, which must refuse alike.
func joinCases() []joinCase {
	valid := func(t *testing.T, r *room.Room, c *clock) string {
		return mustInvite(t, r, "i-1", time.Hour, false, c.now())
	}
	lockAfter := func(setup func(*testing.T, *room.Room, *clock) string) func(*testing.T, *room.Room, *clock) string {
		return func(t *testing.T, r *room.Room, c *clock) string {
			tok := setup(t, r, c)
			if err := r.SetLocked(ownerID, true); err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	expiredAt := func(t *testing.T, r *room.Room, c *clock) string {
		tok := mustInvite(t, r, "i-1", time.Hour, false, c.now())
		c.advance(time.Hour)
		return tok
	}
	fill := func(t *testing.T, r *room.Room, c *clock) string {
		tok := valid(t, r, c)
		for i := len(r.Members); i < room.MaxMembers; i++ {
			mustJoin(t, r, tok, fmt.Sprintf("Guest %d", i), fmt.Sprintf("m-%02d", i), c.now())
		}
		return tok
	}
	return []joinCase{
		{"a valid invitation lets a guest in", valid, "Bob", ""},
		{"an invitation one nanosecond before it expires lets a guest in",
			func(t *testing.T, r *room.Room, c *clock) string {
				tok := valid(t, r, c)
				c.advance(time.Hour - time.Nanosecond)
				return tok
			}, "Bob", ""},
		{"an unknown token is invalid", func(t *testing.T, r *room.Room, c *clock) string {
			valid(t, r, c)
			return "token-of-nothing"
		}, "Bob", room.CodeInviteInvalid},
		{"an empty token is invalid", func(t *testing.T, r *room.Room, c *clock) string {
			valid(t, r, c)
			return ""
		}, "Bob", room.CodeInviteInvalid},
		{"an invitation's public id is not its token", func(t *testing.T, r *room.Room, c *clock) string {
			valid(t, r, c)
			return "i-1"
		}, "Bob", room.CodeInviteInvalid},
		{"a token of another room is invalid", func(t *testing.T, r *room.Room, c *clock) string {
			valid(t, r, c)
			other := newRoom(t, c)
			other.ID = "r-2"
			return mustInvite(t, other, "i-other", time.Hour, false, c.now())
		}, "Bob", room.CodeInviteInvalid},
		{"an invitation is expired exactly at its expiry", expiredAt, "Bob", room.CodeInviteExpired},
		{"a revoked invitation is refused", func(t *testing.T, r *room.Room, c *clock) string {
			tok := valid(t, r, c)
			if err := r.Revoke(ownerID, "i-1"); err != nil {
				t.Fatal(err)
			}
			return tok
		}, "Bob", room.CodeInviteRevoked},
		{"a single-use invitation lets only one guest in", func(t *testing.T, r *room.Room, c *clock) string {
			tok := mustInvite(t, r, "i-1", time.Hour, true, c.now())
			mustJoin(t, r, tok, "Alice", "m-alice", c.now())
			return tok
		}, "Bob", room.CodeInviteUsed},
		{"a full room refuses", fill, "Bob", room.CodeRoomFull},
		{"a locked room refuses a valid invitation", lockAfter(valid), "Bob", room.CodeRoomLocked},
		{"a locked room refuses before checking the token", lockAfter(func(t *testing.T, r *room.Room, c *clock) string {
			valid(t, r, c)
			return "token-of-nothing"
		}), "Bob", room.CodeRoomLocked},
		{"a locked room refuses before checking expiry", lockAfter(expiredAt), "Bob", room.CodeRoomLocked},
		{"a locked room refuses before checking fullness", lockAfter(fill), "Bob", room.CodeRoomLocked},
	}
}

func TestJoinRefusals(t *testing.T) {
	for _, tc := range joinCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := newRoom(t, c)
			tok := tc.setup(t, r, c)
			before := snapshot(t, r)

			m, err := r.Join(tok, tc.user, identity("m-new"), c.now())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Join = %v, want success", err)
				}
				if m.Name != tc.user || r.Members["m-new"] != m {
					t.Errorf("joined member = %+v", m)
				}
				return
			}
			wantCode(t, err, tc.want)
			if m != nil {
				t.Errorf("refused Join returned member %+v", m)
			}
			if after := snapshot(t, r); after != before {
				t.Errorf("refused Join changed the room:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestCheckInviteRefusesAsJoinWouldWithoutUsingTheInvitation(t *testing.T) {
	for _, tc := range joinCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := newRoom(t, c)
			tok := tc.setup(t, r, c)
			before := snapshot(t, r)

			err := r.CheckInvite(tok, c.now())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckInvite = %v, want success", err)
				}
			} else {
				wantCode(t, err, tc.want)
			}
			if after := snapshot(t, r); after != before {
				t.Errorf("CheckInvite changed the room:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestCheckInviteDoesNotUseASingleUseInvitation(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, true, c.now())
	for range 3 {
		if err := r.CheckInvite(tok, c.now()); err != nil {
			t.Fatalf("CheckInvite = %v", err)
		}
	}
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	wantCode(t, r.CheckInvite(tok, c.now()), room.CodeInviteUsed)
}

func TestJoinRefusesWhatALockedRoomWouldOtherwiseReveal(t *testing.T) {
	// A locked room says "locked" whatever the guest tries, so that it
	// reveals neither which tokens exist nor which names are taken.
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	if err := r.SetLocked(ownerID, true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, tok, user string }{
		{"valid token, free name", tok, "Carol"},
		{"valid token, name taken", tok, "BOB"},
		{"valid token, owner's name", tok, ownerName},
		{"valid token, invalid name", tok, "\x00"},
		{"invalid token, name taken", "token-of-nothing", "Bob"},
		{"invalid token, free name", "token-of-nothing", "Carol"},
		{"empty token, empty name", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Join(tc.tok, tc.user, identity("m-new"), c.now())
			wantCode(t, err, room.CodeRoomLocked)
		})
	}
}

func TestJoinRefusesATakenNameCaseInsensitively(t *testing.T) {
	c := newClock()
	r := newRoom(t, c) // Olga
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Zoë", "m-zoe", c.now())
	mustJoin(t, r, tok, "Straße", "m-strasse", c.now())
	// Bob has joined but never connected: his name is still his.
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	// Dave connected once and went away.
	mustJoin(t, r, tok, "Dave", "m-dave", c.now())
	if err := r.Connect("m-dave", room.Conn{Node: "n1", ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	r.Disconnect(room.Conn{Node: "n1", ID: "c1"}, c.now(), discardDelay)

	for _, name := range []string{
		"Olga", "OLGA", " olga ", "Olgа" /* Cyrillic а */, "Zoë", "ZOË", "zoe\u0308", "STRASSE", "strasse", "bob", "DAVE",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := r.Join(tok, name, identity("m-new"), c.now())
			wantCode(t, err, room.CodeNameTaken)
		})
	}
	for _, name := range []string{"Zoe", "Olgierd", "Bobby"} {
		t.Run(name, func(t *testing.T) {
			if _, err := r.Join(tok, name, identity("m-"+name), c.now()); err != nil {
				t.Errorf("Join(%q) = %v, want a distinct name accepted", name, err)
			}
		})
	}
}

func TestJoinRefusesAnInvalidUsername(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	for _, name := range []string{"", "   ", "\u200b", "a\nb", strings.Repeat("x", 41), "\xff"} {
		_, err := r.Join(tok, name, identity("m-new"), c.now())
		wantCode(t, err, room.CodeInvalidName)
	}
}

func TestARefusedJoinDoesNotUseASingleUseInvitation(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, true, c.now())

	_, err := r.Join(tok, "olga", identity("m-bob"), c.now())
	wantCode(t, err, room.CodeNameTaken)
	_, err = r.Join(tok, "", identity("m-bob"), c.now())
	wantCode(t, err, room.CodeInvalidName)

	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	_, err = r.Join(tok, "Carol", identity("m-carol"), c.now())
	wantCode(t, err, room.CodeInviteUsed)
}

func TestAMultiUseInvitationLetsSeveralGuestsIn(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	for i, name := range []string{"Alice", "Bob", "Carol", "Dave"} {
		mustJoin(t, r, tok, name, "m-"+name, c.advance(time.Minute))
		if got := len(r.Members); got != i+2 {
			t.Fatalf("after %s joined the room has %d members, want %d", name, got, i+2)
		}
	}
	if in := r.Invites["i-1"]; in.Used {
		t.Error("a multi-use invitation was marked used")
	}
}

func TestJoinFillsTheRoomUpToMaxMembers(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	for i := 1; i < room.MaxMembers; i++ {
		mustJoin(t, r, tok, fmt.Sprintf("Guest %d", i), fmt.Sprintf("m-%02d", i), c.now())
	}
	if len(r.Members) != room.MaxMembers {
		t.Fatalf("room has %d members, want %d", len(r.Members), room.MaxMembers)
	}
	_, err := r.Join(tok, "One too many", identity("m-extra"), c.now())
	wantCode(t, err, room.CodeRoomFull)

	// A member leaving for good frees a place.
	if _, err := r.Leave("m-01", c.now(), discardDelay); err != nil {
		t.Fatal(err)
	}
	mustJoin(t, r, tok, "One too many", "m-extra", c.now())
}
