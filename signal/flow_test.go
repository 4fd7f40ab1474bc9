package signal

import (
	"strings"
	"testing"
	"time"
)

func TestWelcomeAnnouncesVersionFeaturesAndLimits(t *testing.T) {
	ts := startServer(t, "")
	c := dialRaw(t, ts)
	w := c.next()
	if w.str("type") != "welcome" || w["version"] != float64(Version) {
		t.Fatalf("welcome = %v", w)
	}
	if f, _ := w["features"].([]any); len(f) != 1 || f[0] != "quiet" {
		t.Fatalf("features = %v, want [quiet]", w["features"])
	}
	if w.obj("limits")["maxMessageBytes"] != float64(64<<10) {
		t.Fatalf("limits = %v", w.obj("limits"))
	}
	if c.conn.Subprotocol() != Subprotocol {
		t.Fatalf("subprotocol = %q, want %q", c.conn.Subprotocol(), Subprotocol)
	}
}

func TestCreateInviteJoinAndRejoin(t *testing.T) {
	ts := startServer(t, "")
	a := dial(t, ts)
	owner := createRoom(a, "  Book club ", "Ann")
	if owner.secret == "" || owner.room == "" || owner.name != "Ann" {
		t.Fatalf("owner = %+v", owner)
	}
	token := invite(a, nil)

	b := dial(t, ts)
	preview := b.mustCall("invitation", map[string]any{"room": owner.room, "invite": token})
	if preview.obj("room").str("name") != "Book club" {
		t.Fatalf("invitation preview = %v", preview)
	}
	guest := joinRoom(b, owner.room, token, "Bob")
	if ev := a.event("member.joined"); ev.obj("member").str("id") != guest.id || ev.obj("member").str("name") != "Bob" {
		t.Fatalf("member.joined = %v", ev)
	}

	b.close()
	if ev := a.event("member.disconnected"); ev.obj("member").str("id") != guest.id {
		t.Fatalf("member.disconnected = %v", ev)
	}
	b2 := dial(t, ts)
	r := b2.mustCall("rejoin", guest.creds())
	if r.obj("self").str("secret") != "" {
		t.Fatalf("rejoin reply repeats the secret: %v", r)
	}
	if r.obj("self").str("name") != "Bob" || r.obj("room").str("owner") != owner.id {
		t.Fatalf("rejoin reply = %v", r)
	}
	if ev := a.event("member.connected"); ev.obj("member").str("id") != guest.id {
		t.Fatalf("member.connected = %v", ev)
	}
	members, _ := r.obj("room")["members"].([]any)
	if len(members) != 2 {
		t.Fatalf("members = %v", members)
	}
}

func TestSignalReachesOnlyMembersOfTheSameRoom(t *testing.T) {
	ts := startServer(t, "")
	a, b, x := dial(t, ts), dial(t, ts), dial(t, ts)
	owner := createRoom(a, "one", "Ann")
	guest := joinRoom(b, owner.room, invite(a, nil), "Bob")
	stranger := createRoom(x, "two", "Xena")

	a.mustCall("signal", map[string]any{"to": guest.id, "data": map[string]any{"sdp": "offer"}})
	got := b.event("signal")
	if got.str("from") != owner.id || got.obj("data").str("sdp") != "offer" {
		t.Fatalf("signal = %v", got)
	}
	b.mustCall("signal", map[string]any{"to": owner.id, "data": map[string]any{"candidate": "c"}})
	if got := a.event("signal"); got.str("from") != guest.id {
		t.Fatalf("signal = %v", got)
	}

	x.refused("peer_unavailable", "signal", map[string]any{"to": owner.id, "data": map[string]any{}})
	a.refused("peer_unavailable", "signal", map[string]any{"to": stranger.id, "data": map[string]any{}})
	a.refused("bad_message", "signal", map[string]any{"to": owner.id, "data": map[string]any{}})
	a.noEvent("signal", 100*time.Millisecond)

	lone := dial(t, ts)
	lone.refused("not_in_room", "signal", map[string]any{"to": owner.id, "data": map[string]any{}})
}

// TestQuietSignalIsAnsweredOnlyWhenItFails: a signal with "quiet": true is
// relayed like any other, gets no "ok", and is still answered when it is
// refused, with its id when it has one; false or null mean a reply as usual.
// Both readers of signals are covered: the one-pass scanner and, for a key
// written with an escape (which the scanner leaves to decode, see
// TestScanSignalTakesThePlainFormOnly), decode.
func TestQuietSignalIsAnsweredOnlyWhenItFails(t *testing.T) {
	ts := startServer(t, "")
	a, b, owner, guest := annAndBob(t, ts)
	lone := dial(t, ts)

	// GUEST stands for Bob's id, NOBODY for an id no member has.
	tests := []struct {
		name    string
		from    *client
		frame   string
		relayed bool   // whether Bob receives it
		reply   string // "" for none, "ok", or an error code
		re      any    // the id the reply names
	}{
		{"quiet, relayed: no reply", a, `{"id":101,"type":"signal","to":"GUEST","data":{"n":1},"quiet":true}`, true, "", nil},
		{"quiet without id, relayed: no reply", a, `{"quiet":true,"type":"signal","to":"GUEST","data":{"n":2}}`, true, "", nil},
		{"quiet read by decode, relayed: no reply", a, `{"id":102,"type":"signal","to":"GUEST","data":{"n":3},"qu\u0069et":true}`, true, "", nil},
		{"quiet false: ok", a, `{"id":103,"type":"signal","to":"GUEST","data":{"n":4},"quiet":false}`, true, "ok", float64(103)},
		{"quiet null: ok", a, `{"id":104,"type":"signal","to":"GUEST","data":{"n":5},"quiet":null}`, true, "ok", float64(104)},
		{"quiet to nobody: error with re", a, `{"id":105,"type":"signal","to":"NOBODY","data":{},"quiet":true}`, false, "peer_unavailable", float64(105)},
		{"quiet without id refused: error without re", a, `{"type":"signal","to":"NOBODY","data":{},"quiet":true}`, false, "peer_unavailable", nil},
		{"quiet to oneself: error with re", b, `{"id":106,"type":"signal","to":"GUEST","data":{},"quiet":true}`, false, "bad_message", float64(106)},
		{"quiet outside a room: error with re", lone, `{"id":107,"type":"signal","to":"GUEST","data":{},"quiet":true}`, false, "not_in_room", float64(107)},
		{"quiet with an unknown field: error with re", a, `{"id":108,"type":"signal","to":"GUEST","data":{},"quiet":true,"loud":true}`, false, "bad_message", float64(108)},
		{"quiet as a string: error with re", a, `{"id":109,"type":"signal","to":"GUEST","data":{},"quiet":"yes"}`, false, "bad_message", float64(109)},
		{"quiet as a number: error with re", a, `{"id":110,"type":"signal","to":"GUEST","data":{},"quiet":1}`, false, "bad_message", float64(110)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.t, b.t, lone.t = t, t, t
			tt.from.sendRaw(strings.NewReplacer("GUEST", guest.id, "NOBODY", "AAAAAAAAAAAAAAAAAAAAAA").Replace(tt.frame))
			// A ping behind it: its pong comes right after the signal's
			// reply, if there is one.
			pong := tt.from.mustCall("ping", nil)
			if tt.reply == "" {
				if len(tt.from.queue) != 0 {
					t.Fatalf("replies before the pong: %v", tt.from.queue)
				}
			} else {
				if len(tt.from.queue) != 1 {
					t.Fatalf("before the pong %v, got %v, want one %s", pong, tt.from.queue, tt.reply)
				}
				r := tt.from.queue[0]
				tt.from.queue = nil
				if got := r.str("type"); got != tt.reply && r.code() != tt.reply {
					t.Fatalf("reply %v, want %s", r, tt.reply)
				}
				if r["re"] != tt.re {
					t.Fatalf("re = %v, want %v", r["re"], tt.re)
				}
			}
			if tt.relayed {
				if got := b.event("signal"); got.str("from") != owner.id {
					t.Fatalf("signal = %v", got)
				}
			}
		})
	}
	a.t, b.t, lone.t = t, t, t
	b.noEvent("signal", 100*time.Millisecond)
}

func TestLockRefusesNewGuestsButNotMembers(t *testing.T) {
	ts := startServer(t, "")
	a, c := dial(t, ts), dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	token := invite(a, nil)
	carl := joinRoom(c, owner.room, token, "Carl")

	c.refused("not_owner", "lock", map[string]any{"locked": true})
	a.mustCall("lock", map[string]any{"locked": true})
	if ev := c.event("room.locked"); ev["locked"] != true {
		t.Fatalf("room.locked = %v", ev)
	}

	d := dial(t, ts)
	d.refused("room_locked", "invitation", map[string]any{"room": owner.room, "invite": token})
	d.refused("room_locked", "join", map[string]any{"room": owner.room, "invite": token, "name": "Dora"})
	// A taken name must not be revealed by a locked room.
	d.refused("room_locked", "join", map[string]any{"room": owner.room, "invite": token, "name": "Carl"})

	c.close()
	c2 := dial(t, ts)
	c2.mustCall("rejoin", carl.creds())

	a.mustCall("lock", map[string]any{"locked": false})
	joinRoom(d, owner.room, token, "Dora")
}

func TestInvitationExpiryRevocationAndSingleUse(t *testing.T) {
	clk := newClock()
	ts := startServer(t, "", func(c *Config) { c.Now = clk.Now })
	a := dial(t, ts)
	owner := createRoom(a, "r", "Ann")

	short := invite(a, map[string]any{"ttl": 60})
	once := invite(a, map[string]any{"singleUse": true})
	revoked := a.mustCall("invite", nil).obj("invite")
	a.mustCall("revoke", map[string]any{"invite": revoked.str("id")})

	list := a.mustCall("invites", nil)
	if got, _ := list["invites"].([]any); len(got) != 2 {
		t.Fatalf("outstanding invitations = %v, want the two unrevoked", list)
	}

	g := dial(t, ts)
	g.refused("invite_revoked", "join", map[string]any{"room": owner.room, "invite": revoked.str("token"), "name": "G"})
	g.refused("invite_invalid", "join", map[string]any{"room": owner.room, "invite": "nonsense", "name": "G"})
	joinRoom(g, owner.room, once, "G1")
	h := dial(t, ts)
	h.refused("invite_used", "join", map[string]any{"room": owner.room, "invite": once, "name": "G2"})

	clk.Advance(60 * time.Second)
	h.refused("invite_expired", "join", map[string]any{"room": owner.room, "invite": short, "name": "G2"})
	a.refused("invalid_ttl", "invite", map[string]any{"ttl": 59})
	a.refused("invalid_ttl", "invite", map[string]any{"ttl": 31 * 24 * 3600})
	a.refused("invalid_ttl", "invite", map[string]any{"ttl": uint64(18446744134)}) // overflows a Duration
}

func TestDuplicateNameRaceHasExactlyOneWinner(t *testing.T) {
	ts := startServer(t, "")
	a := dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	token := invite(a, nil)

	const n = 8
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, ts)
	}
	replies := make(chan msg, n)
	for i, c := range clients {
		go func() {
			// Different spellings of one name.
			names := []string{"zoë", "ZOË", "Zoe\u0308", " zoë "}
			c.sendRaw(`{"id":1,"type":"join","room":"` + owner.room + `","invite":"` + token + `","name":"` + names[i%len(names)] + `"}`)
		}()
	}
	for _, c := range clients {
		replies <- c.await("join reply", func(m msg) bool { return m["re"] == float64(1) })
	}
	close(replies)
	won, lost := 0, 0
	for r := range replies {
		switch {
		case r.str("type") == "joined":
			won++
		case r.code() == "name_taken":
			lost++
		default:
			t.Fatalf("unexpected reply %v", r)
		}
	}
	if won != 1 || lost != n-1 {
		t.Fatalf("won %d, lost %d; want exactly one winner", won, lost)
	}
}
