package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestCreateRoomInviteAndJoin(t *testing.T) {
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	roomID := a.createRoom("  Book club ", "Ann")
	if got := eval[string](a, `location.pathname`); got != "/r/"+roomID {
		t.Errorf("room page path = %q, want /r/%s", got, roomID)
	}
	if got := a.text("#page-title"); got != "Book club" {
		t.Errorf("room title = %q, want the trimmed name", got)
	}
	a.waitFor(`!document.querySelector("#owner-badge").hidden`, "the owner badge")
	a.waitMembers("Ann")

	link := a.invite(false)
	prefix := srv.URL + "/r/" + roomID + "#invite="
	if !strings.HasPrefix(link, prefix) || len(link) < len(prefix)+20 {
		t.Fatalf("invitation link = %q, want %s<token>", link, prefix)
	}

	b := newParticipant(t, srv, "B")
	b.open(link)
	b.waitText("#page-title", "Book club")
	if href := eval[string](b, `location.href`); strings.Contains(href, "#") || strings.Contains(href, "invite") {
		t.Errorf("the token stays in the address bar: %s", href)
	}
	b.setValue("#join-name", "Bob")
	b.click("#join-button")
	b.waitRoom()
	b.waitMembers("Ann", "Bob")
	a.waitMembers("Ann", "Bob")
	if eval[bool](b, `!document.querySelector("#owner-badge").hidden || !document.querySelector("#owner-tools").hidden`) {
		t.Errorf("a guest is shown the owner's tools")
	}

	// A returning member goes straight in, without being asked a name.
	b.reload()
	b.waitRoom()
	b.waitMembers("Ann", "Bob")
	a.waitMembers("Ann", "Bob")

	// A taken name is refused in words, and another one is accepted.
	c := newParticipant(t, srv, "C")
	c.open(link)
	c.setValue("#join-name", "BOB")
	c.click("#join-button")
	c.waitText("#join-error", "already uses that username")
	c.setValue("#join-name", "Cleo")
	c.click("#join-button")
	c.waitRoom()
	a.waitMembers("Ann", "Bob", "Cleo")
}

func TestNamesRenderAsText(t *testing.T) {
	const (
		roomName = `<img src=x onerror="window.__pwned=1">`
		annName  = `<script>window.__pwned=2</script>`
		bobName  = `"><svg onload=window.__pwned=3>&amp;`
	)
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	a.createRoom(roomName, annName)
	link := a.invite(true)

	b := newParticipant(t, srv, "B")
	b.open(link)
	b.waitText("#page-title", roomName)
	b.setValue("#join-name", bobName)
	b.click("#join-button")
	b.waitRoom()
	for _, p := range []*participant{a, b} {
		p.waitMembers(annName, bobName)
		if got := p.text("#page-title"); got != roomName {
			t.Errorf("%s: room title = %q, want %q as text", p.name, got, roomName)
		}
		if got := p.text("#self-name"); got != map[*participant]string{a: annName, b: bobName}[p] {
			t.Errorf("%s: own name = %q", p.name, got)
		}
	}
	a.click(".brand")
	a.waitFor(`document.querySelector("#room-list .room-name")?.textContent === `+jsString(roomName), "the room listed by name")
	for _, p := range []*participant{a, b} {
		if n := eval[int](p, `document.querySelectorAll("main img, main script, main svg").length`); n != 0 {
			t.Errorf("%s: %d elements made from names", p.name, n)
		}
		if eval[bool](p, `"__pwned" in window`) {
			t.Errorf("%s: a name ran as script", p.name)
		}
	}
}

func TestLockRefusesNewGuestsButMembersComeBack(t *testing.T) {
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	a.createRoom("Quiet room", "Ann")
	link := a.invite(false)
	c := newParticipant(t, srv, "C")
	c.joinByLink(link, "Carl")
	a.waitMembers("Ann", "Carl")

	a.click("#lock-button")
	a.waitText("#lock-state", "Locked")
	a.waitFor(`!document.querySelector("#locked-badge").hidden`, "the locked badge")
	c.waitFor(`!document.querySelector("#locked-badge").hidden`, "the locked badge")

	d := newParticipant(t, srv, "D")
	d.open(link)
	d.waitFor(`document.querySelector("#join")?.dataset.code === "room_locked"`, "the locked refusal")
	if got := d.text("#page-title") + " " + d.text("#refusal"); !strings.Contains(got, "locked") || !strings.Contains(got, "unlock") {
		t.Errorf("locked refusal reads %q", got)
	}

	// A member comes back even though the room is locked.
	c.reload()
	c.waitRoom()
	c.waitMembers("Ann", "Carl")
	a.waitMembers("Ann", "Carl")

	a.click("#lock-button")
	a.waitText("#lock-state", "Open")
	c.waitFor(`document.querySelector("#locked-badge").hidden`, "the locked badge gone")
	d.click("#join .actions button.primary") // Try again
	d.setValue("#join-name", "Dora")
	d.click("#join-button")
	d.waitRoom()
	for _, p := range []*participant{a, c, d} {
		p.waitMembers("Ann", "Carl", "Dora")
	}
}

func TestHomeListsRememberedRooms(t *testing.T) {
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	a.open("/")
	a.waitFor(`document.querySelector("#my-rooms").dataset.state === "empty"`, "the empty state")
	a.waitText("#rooms-state", "No rooms yet")

	a.createRoom("Garden", "Ann")
	b := newParticipant(t, srv, "B")
	b.joinByLink(a.invite(false), "Bob")
	a.waitMembers("Ann", "Bob")

	a.leaveForNow()
	a.waitFor(`document.querySelector("#room-list li")?.dataset.alive === "true"`, "the room checked alive")
	if got := a.text("#room-list li"); !strings.Contains(got, "Garden") || !strings.Contains(got, "as Ann") || !strings.Contains(got, "1 person online") {
		t.Errorf("remembered room reads %q", got)
	}
	b.waitMembers("Ann (away)", "Bob")

	// One click to go back in.
	a.click("#room-list .room-link")
	a.waitRoom()
	a.waitMembers("Ann", "Bob")
	b.waitMembers("Ann", "Bob")

	// Forget it: it leaves the list, and the room no longer knows this browser.
	a.click(".brand")
	a.waitFor(`document.querySelector("#room-list li")?.dataset.alive === "true"`, "the room checked alive")
	a.click("#room-list li button")
	a.click("dialog button.danger")
	a.waitFor(`document.querySelector("#my-rooms").dataset.state === "empty"`, "the empty list")
	a.open("/r/" + eval[string](b, `document.querySelector("#room").dataset.roomId`))
	a.waitText("#page-title", "You need an invitation")
}

func TestServerRestartReconnects(t *testing.T) {
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	a.createRoom("Standup", "Ann")
	link := a.invite(false)
	b := newParticipant(t, srv, "B")
	b.joinByLink(link, "Bob")
	c := newParticipant(t, srv, "C")
	c.joinByLink(link, "Cy")
	c.leaveForNow()
	c.waitFor(`document.querySelector("#my-rooms").dataset.state === "ready"`, "the rooms checked")
	a.waitMembers("Ann", "Bob", "Cy (away)")

	srv.stopT(t)
	for _, p := range []*participant{a, b} {
		p.waitFor(bannerState+` === "reconnecting"`, "the reconnecting banner")
		p.waitText("#conn-banner", "reconnecting")
		p.waitFor(roomPageReady, "the room page kept while reconnecting")
	}
	c.waitFor(`document.querySelector("#my-rooms").dataset.state === "unreachable"`, "the unreachable state")
	a.viewport(375, 667)
	a.screenshot("room-reconnecting-375x667")
	c.viewport(375, 667)
	c.screenshot("home-unreachable-375x667")

	started := time.Now()
	srv.startT(t)
	for _, p := range []*participant{a, b} {
		p.waitFor(bannerState+` === ""`, "the banner gone")
		p.waitMembers("Ann", "Bob", "Cy (away)")
	}
	t.Logf("member lists right again %v after the server came back", time.Since(started).Round(10*time.Millisecond))
	c.waitFor(`document.querySelector("#my-rooms").dataset.state === "ready"`, "the rooms checked again")
	c.waitFor(`document.querySelector("#room-list li")?.dataset.alive === "true"`, "the room alive")

	// The connection still works for the room after the reconnect.
	a.click("#lock-button")
	b.waitFor(`!document.querySelector("#locked-badge").hidden`, "the lock seen after the reconnect")
}

func TestScreenshotsAndNoOverflow(t *testing.T) {
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	a.createRoom("Design review", "Ann")
	link := a.invite(true)
	b := newParticipant(t, srv, "B")
	b.joinByLink(a.invite(false), "Bartholomew-Alexander")
	c := newParticipant(t, srv, "C")
	c.joinByLink(a.invite(false), "Chidi 🌍")
	a.waitMembers("Ann", "Bartholomew-Alexander", "Chidi 🌍")
	a.openOwnerTools()

	d := newParticipant(t, srv, "D")
	d.open(link)
	d.waitFor(`document.querySelector("#join-name") !== null`, "the join form")

	e := newParticipant(t, srv, "E")
	e.open("/")
	e.waitFor(`document.querySelector("#my-rooms").dataset.state === "empty"`, "the empty home")

	sizes := []struct{ w, h int64 }{{1280, 800}, {375, 667}}
	shoot := func(p *participant, page string) {
		p.controlsNamed(page)
		for _, s := range sizes {
			p.viewport(s.w, s.h)
			p.noHorizontalOverflow(fmt.Sprintf("%s at %dx%d", page, s.w, s.h))
			p.screenshot(fmt.Sprintf("%s-%dx%d", page, s.w, s.h))
		}
	}
	shoot(a, "room-owner")
	a.colorScheme("dark")
	a.screenshot("room-owner-dark-375x667")
	a.colorScheme("light")
	shoot(b, "room-guest")
	shoot(d, "join")
	shoot(e, "home-empty")

	c.leaveForNow()
	c.waitFor(`document.querySelector("#room-list li")?.dataset.alive === "true"`, "the room checked alive")
	shoot(c, "home")

	// A refusal, in words.
	a.viewport(1280, 800)
	a.click("#lock-button")
	a.waitText("#lock-state", "Locked")
	f := newParticipant(t, srv, "F")
	f.open(link)
	f.waitFor(`document.querySelector("#join")?.dataset.code === "room_locked"`, "the locked refusal")
	shoot(f, "join-locked")
}

// TestServerConnectionWithoutUI drives protocol.js alone, as the call
// modules and tools may: replies, refusals with their codes, events,
// silent rejoin after a server restart.
func TestServerConnectionWithoutUI(t *testing.T) {
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	a.open("/")
	type result struct {
		Version   int      `json:"version"`
		Room      string   `json:"room"`
		Refusal   []string `json:"refusal"`
		NotInRoom string   `json:"notInRoom"`
		Joined    string   `json:"joined"`
		Pongs     bool     `json:"pongs"`
		Quiet     []string `json:"quiet"`
	}
	r := eval[result](a, `(async () => {
		const { ServerConnection } = await import('/js/protocol.js');
		const owner = window.owner = new ServerConnection({ pingInterval: 100 });
		await owner.connect();
		const joined = await owner.request('create', { room: 'Proto', name: 'Ann' });
		owner.setRejoin({ room: joined.room.id, member: joined.self.id, secret: joined.self.secret });
		const refusal = await owner.request('kick', { member: joined.self.id }).then(() => [], (e) => [e.name, e.code, e.message]);
		const link = await owner.request('invite', { ttl: 3600 });
		const guest = window.guest = new ServerConnection();
		const notInRoom = await guest.request('lock', { locked: true }).then(() => '', (e) => e.code);
		const seen = new Promise((resolve) => owner.on('member.joined', (m) => resolve(m.member.name)));
		const g = await guest.request('join', { room: joined.room.id, invite: link.invite.token, name: 'Bob' });
		guest.setRejoin({ room: joined.room.id, member: g.self.id, secret: g.self.secret });
		const name = await seen;
		const pong = await owner.request('ping');
		// Quiet signals: relayed with no answer; a refusal comes as an
		// "error" event naming the signal, and answers no request in flight.
		const relayed = new Promise((resolve) => guest.on('signal', (m) => resolve('relayed ' + m.data.n)));
		const sent = await owner.signal(g.self.id, { n: 1 });
		const refused = new Promise((resolve) => owner.on('error', (e) => resolve('refused ' + e.code + ' re ' + typeof e.re)));
		const nobody = owner.signal('AAAAAAAAAAAAAAAAAAAAAA', {});
		const invites = await owner.request('invites').then((r) => 'then ' + r.type, (e) => 'then refused ' + e.code);
		// Over the rate limit, quiet signals are refused without re: those
		// refusals must not be taken for the answer to a request sent after
		// them. With the bucket full again (burst 200, 50/s), 212 signals
		// make about a dozen refusals, under the 20 that cut a connection.
		// The page stays busy while they come in (so they are read after
		// the request is sent), long enough for the limit to let the
		// request through.
		await new Promise((resolve) => setTimeout(resolve, 600));
		let limited = 0;
		owner.on('error', (e) => e.code === 'rate_limited' && limited++);
		for (let i = 0; i < 212; i++) owner.signal(g.self.id, { i });
		const until = Date.now() + 1200;
		while (Date.now() < until);
		const afterFlood = await owner.request('invites').then((r) => 'after the flood ' + r.type, (e) => 'after the flood refused ' + e.code);
		const flood = limited > 0 ? 'some refused for the rate' : 'none refused for the rate';
		// A server without the feature gets signals it answers.
		owner.welcome = { ...owner.welcome, features: [] };
		const frames = [];
		const send = WebSocket.prototype.send;
		WebSocket.prototype.send = function (d) { frames.push(d); return send.call(this, d); };
		const answered = new Promise((resolve) => guest.on('signal', (m) => m.data.n === 2 && resolve('answered signal relayed')));
		const plain = await owner.signal(g.self.id, { n: 2 });
		WebSocket.prototype.send = send;
		const sentPlain = frames.filter((f) => f.includes('"n":2')).map((f) => (f.includes('"quiet"') ? 'sent quiet' : 'sent plain'));
		const quiet = ['sent ' + sent, await relayed, 'sent ' + (await nobody), await refused, invites, flood, afterFlood, 'sent ' + plain, ...sentPlain, await answered];
		return { version: owner.welcome.version, room: joined.room.name, refusal, notInRoom, joined: name, pongs: pong.type === 'pong', quiet };
	})()`)
	want := result{Version: 1, Room: "Proto", Refusal: []string{"ProtocolError", "cannot_kick_self", "the owner cannot kick themselves; leave instead"}, NotInRoom: "not_in_room", Joined: "Bob", Pongs: true,
		Quiet: []string{"sent undefined", "relayed 1", "sent undefined", "refused peer_unavailable re number", "then invites",
			"some refused for the rate", "after the flood invites", "sent undefined", "sent plain", "answered signal relayed"}}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}

	// Both connections come back by themselves and are in the room again:
	// a signal goes through without anyone asking to rejoin.
	eval[bool](a, `(window.states = [], owner.on('state', (s) => states.push(s.state)), true)`)
	srv.restart(t)
	a.waitFor(`owner.state === "open" && guest.state === "open"`, "both connections open again")
	got := eval[string](a, `(async () => {
		const got = new Promise((resolve) => guest.on('signal', (m) => resolve(m.data.hello)));
		await owner.request('signal', { to: guest.rejoinCredentials.member, data: { hello: 'again' } });
		return await got;
	})()`)
	if got != "again" {
		t.Errorf("signal after the restart carried %q", got)
	}
	if states := eval[[]string](a, `states`); len(states) < 2 || states[0] != "reconnecting" || states[len(states)-1] != "open" {
		t.Errorf("states through the restart: %v", states)
	}
}

func TestOwnerRemovesAMemberAndHandsOver(t *testing.T) {
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	a.createRoom("Club", "Ann")
	link := a.invite(false)
	b := newParticipant(t, srv, "B")
	b.joinByLink(link, "Bob")
	c := newParticipant(t, srv, "C")
	c.joinByLink(link, "Cid")
	a.waitMembers("Ann", "Bob", "Cid")
	if eval[bool](b, `[...document.querySelectorAll(".member-remove")].some(e => !e.hidden)`) {
		t.Errorf("a guest is offered to remove members")
	}

	cid := eval[string](c, `document.querySelector("#member-list li[data-self=true]").dataset.memberId`)
	a.click(fmt.Sprintf(`li[data-member-id=%q] .member-remove`, cid))
	a.click("dialog button.danger")
	c.waitText("#room-ended", "no longer in this room")
	a.waitMembers("Ann", "Bob")
	b.waitMembers("Ann", "Bob")
	c.reload()
	c.waitText("#page-title", "You need an invitation")

	// The owner leaves for good: the eldest member becomes the owner.
	a.click("#leave-button")
	a.click("#leave-forever")
	a.click("dialog button.danger")
	a.waitText(".notice", "for good")
	a.waitFor(`document.querySelector("#my-rooms").dataset.state === "empty"`, "no rooms left")
	b.waitMembers("Bob")
	b.waitFor(`!document.querySelector("#owner-badge").hidden && !document.querySelector("#owner-tools").hidden`, "Bob's owner tools")
}
