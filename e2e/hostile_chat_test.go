package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests put a malicious member in a room: a pion peer (interopPeer)
// that joins over the real WebSocket protocol with its own identity key
// and speaks the client's data-channel format, against members driven by
// meshDriverJS with the real chat panel (chatview.js) mounted.

// adoptJump is chat.js's ADOPT_JUMP: how far one accepted message may move
// a member's clock.
const adoptJump = 1 << 20

// mountChatViewJS shows the driver's chat in the real chat panel, names
// taken from the member lists.
const mountChatViewJS = `(async () => {
	const { ChatView } = await import('/js/chatview.js');
	const section = document.createElement('section');
	section.id = 'chat';
	document.body.append(section);
	T.view = new ChatView(section, { chat: T.chat, nameOf: (id) => T.names.get(id) ?? '', othersOnline: () => T.mesh.openPeers.length });
	return true;
})()`

// hostileRoom is a room of two browser members, V (the victim) and B,
// with the chat panel on V's page, and the malicious pion member M
// connected to V, its data channel open on both sides.
func hostileRoom(t *testing.T, ctx context.Context) (srv *server, v, b *meshMember, m *interopPeer) {
	t.Helper()
	srv = startServer(t, "")
	ms := meshRoom(t, srv, true, "V", "B")
	v, b = ms[0], ms[1]
	v.waitConnected("direct", b)
	eval[bool](v.participant, mountChatViewJS)
	room := eval[string](v.participant, `T.room`)
	token := eval[string](v.participant, `T.invite()`)
	m = newInteropPeer(ctx, t, srv, room, token, v.id)
	go m.run()
	v.until(fmt.Sprintf(`T.mesh.openPeers.includes(%q)`, m.self), "V's data channel to M open")
	m.waitFor(ctx, "M's data channel open", m.opened.Load)
	return srv, v, b, m
}

// chatStats reads a member's chat counters once every message received
// has been accepted or dropped.
func chatStats(m *meshMember) map[string]int {
	m.t.Helper()
	return eval[map[string]int](m.participant, `T.chat.idle().then(() => ({ accepted: T.chat.stats.accepted, ...T.chat.stats.dropped, clock: T.chat.clock }))`)
}

// TestHostileChatForgeriesAreDropped checks that a member cannot make
// another read what its author did not write: a history claiming another
// member's and the victim's own authorship, a history outside its time,
// live messages whose signature does not match, a poison Lamport value,
// and fields of the wrong type are all dropped and counted; the victim's
// clock stays near what it has seen, so its next message still reaches the
// others; a link that hides its host behind user information shows the
// real one; only the victim's own message is marked as its own, by a badge;
// and a message handed on by someone other than its author says so.
func TestHostileChatForgeriesAreDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	srv, v, b, m := hostileRoom(t, ctx)
	eval[string](b.participant, `T.chat.send("hello from B").id`)
	v.until(`T.chatLines().includes("hello from B")`, "B's message at V")
	room := m.room
	now := time.Now().UnixMilli()

	// In M's history window: forgeries (signed by M's key in B's and V's
	// name), an entry of wrong types, and one of M's own, which stays.
	forgedB := m.key.sign(t, room, b.id, chatMessage{ID: "forged-b", Author: b.id, Lamport: 2, Text: "B never wrote this", Time: now})
	forgedV := m.key.sign(t, room, v.id, chatMessage{ID: "forged-v", Author: v.id, Lamport: 2, Text: "V never wrote this", Time: now})
	own := m.key.sign(t, room, m.self, chatMessage{ID: "m-history", Author: m.self, Lamport: 3, Text: "M, in history", Time: now})
	badTypes := map[string]any{"id": "bad-types", "author": m.self, "lamport": "3", "text": 5, "time": 1e300, "sig": 7}
	m.sendChat(mustJSON(t, map[string]any{"type": "chat.history", "messages": []any{forgedB, forgedV, badTypes, own}}))

	// Live: a poison Lamport value (beyond the range: refused), one far
	// ahead (signed and in range: kept, but it moves V's clock by 2^20 at
	// most), a signature that does not match the text, a time of 1e300, fields of the wrong type; then a
	// history outside its window, and a valid message last.
	m.sendChat(m.key.live(t, room, m.self, chatMessage{ID: "poison", Lamport: 1<<53 - 1, Text: "poison", Time: now}))
	m.sendChat(m.key.live(t, room, m.self, chatMessage{ID: "far-ahead", Lamport: 1 << 52, Text: "far ahead", Time: now}))
	altered := m.key.sign(t, room, m.self, chatMessage{ID: "altered", Lamport: 4, Text: "what was signed", Time: now})
	altered.Type, altered.Text = "chat.msg", "what was not signed"
	m.sendChat(mustJSON(t, altered))
	m.sendChat(strings.Replace(m.key.live(t, room, m.self, chatMessage{ID: "huge-time", Lamport: 4, Text: "huge time", Time: 1}), `"time":1`, `"time":1e300`, 1))
	m.sendChat(`{"type":"chat.msg","id":5,"lamport":{},"text":["x"],"time":"now","sig":null}`)
	m.sendChat(`{"type":"chat.seen","ids":"all"}`)
	late := m.key.sign(t, room, m.self, chatMessage{ID: "late", Author: m.self, Lamport: 4, Text: "late history", Time: now})
	m.sendChat(mustJSON(t, map[string]any{"type": "chat.history", "messages": []any{late}}))
	m.sendChat(m.key.live(t, room, m.self, chatMessage{ID: "m-link", Lamport: 5, Text: "see https://good.example@evil.example/", Time: now}))
	m.sendChat(m.key.live(t, room, m.self, chatMessage{ID: "m-live", Lamport: 6, Text: "M, live", Time: now}))

	v.until(`T.chatLines().includes("M, live")`, "M's valid live message at V")
	stats := chatStats(v)
	if got, want := eval[[]string](v.participant, `T.chat.idle().then(() => T.chatLines())`), []string{"hello from B", "M, in history", "see https://good.example@evil.example/", "M, live", "far ahead"}; !slices.Equal(got, want) {
		t.Errorf("V's chat %q, want %q", got, want)
	}
	for counter, want := range map[string]int{"unverified": 3, "bad": 5, "history": 1} {
		if stats[counter] < want {
			t.Errorf("V counted %d %s, want at least %d (stats %v)", stats[counter], counter, want, stats)
		}
	}
	if stats["clock"] > adoptJump+100 {
		t.Errorf("V's clock is %d after the poison, want at most 2^20 + 100", stats["clock"])
	}
	v.until(`new Promise(requestAnimationFrame).then(() => document.querySelectorAll("#chat .msg").length === 5)`, "the five messages drawn")
	drawn := eval[map[string]any](v.participant, `(() => {
		const chat = document.querySelector("#chat");
		const a = chat.querySelector(".msg-text a");
		return { own: chat.querySelectorAll(".msg[data-own=true], .badge-self").length, text: chat.textContent,
			href: a?.href ?? "", host: a?.querySelector(".link-host")?.textContent ?? "" };
	})()`)
	if drawn["own"] != float64(0) {
		t.Errorf("V's page shows %v messages as V's own", drawn["own"])
	}
	if drawn["href"] != "https://evil.example/" || drawn["host"] != "evil.example" {
		t.Errorf("M's link leads to %v and shows the host %q, want https://evil.example/ shown as evil.example", drawn["href"], drawn["host"])
	}
	for _, forged := range []string{"never wrote", "poison", "not signed", "huge time", "late history"} {
		if strings.Contains(drawn["text"].(string), forged) {
			t.Errorf("V's page shows %q", forged)
		}
	}

	// V is not silenced: its next message carries a timestamp at most
	// 2^20 past what it had, far below 2^52, and reaches B.
	eval[string](v.participant, `T.chat.send("V still heard").id`)
	b.until(`T.chatLines().includes("V still heard")`, "V's message at B")
	v.until(`new Promise(requestAnimationFrame).then(() => document.querySelector("#chat .msg[data-own=true] .msg-author .badge-self")?.textContent === "You")`, "V's own message marked by a badge")
	if l := eval[int](b.participant, `T.chat.messages.find((m) => m.text === "V still heard").lamport`); l > adoptJump+100 {
		t.Errorf("V's message carries Lamport %d", l)
	}

	// A late joiner L gets M's messages from V: shown as relayed by V. (L
	// has no channel to M; it is given M's key before it joins, as the
	// server gives it with the member list.)
	l := &meshMember{participant: meshOpen(t, srv, "L")}
	eval[bool](l.participant, fmt.Sprintf(`T.learnKey(%q, %q)`, m.self, m.key.public(t)))
	l.id = eval[map[string]string](l.participant, fmt.Sprintf(`T.join(%q, %q, "L")`, room, eval[string](v.participant, `T.invite()`)))["self"]
	eval[bool](l.participant, mountChatViewJS)
	l.until(`T.chatLines().includes("M, live") && T.chatLines().includes("V still heard")`, "the history at L")
	l.until(`new Promise(requestAnimationFrame).then(() => [...document.querySelectorAll("#chat .msg")].some((li) => li.textContent.includes("M, live")))`, "M's message drawn at L")
	relayed := eval[string](l.participant, `[...document.querySelectorAll("#chat .msg")].find((li) => li.textContent.includes("M, live")).querySelector(".msg-relayed")?.textContent ?? ""`)
	if relayed != "relayed by V" {
		t.Errorf("M's message at L says %q, want %q", relayed, "relayed by V")
	}
	if err := m.failure(); err != nil {
		t.Error(err)
	}
	for _, p := range []*meshMember{v, b} {
		p.noErrors()
	}
}

// The budgets a flood is held to (chat.js CHAT_BUDGET, mesh.js
// CHANNEL_BUDGET), and how long chat.js gathers acknowledgements
// (SEEN_DELAY_MS): what a flood may get through is their burst plus their
// rate over the flood's duration, measured in the page, so that the bounds
// hold however slowly a loaded machine deals with the flood.
const (
	chatBurst, chatRate = 40, 10  // chat.msg per peer: at once, a second
	meshBurst, meshRate = 200, 50 // data-channel messages per peer
	seenDelay           = 200 * time.Millisecond
)

// TestHostileChatFloodCostsOneLayout checks that a flood of 3,000 tiny
// messages from one member does not freeze the victim's page (it answers
// an evaluation within a second throughout), is cut to the member's
// budget, is acknowledged in batched chat.seen (at most one per gathering
// time) rather than one per message, and leaves the others' messages in
// place and their new ones coming.
func TestHostileChatFloodCostsOneLayout(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	_, v, b, m := hostileRoom(t, ctx)
	eval[string](b.participant, `T.chat.send("B before the flood").id`)
	v.until(`T.chatLines().includes("B before the flood")`, "B's message at V")

	const flood = 3000
	msgs := make([]string, flood)
	for i := range msgs {
		msgs[i] = m.key.live(t, m.room, m.self, chatMessage{ID: fmt.Sprintf("f%d", i), Lamport: int64(2 + i), Text: fmt.Sprintf("f%d", i)})
	}
	took := floodAnswered(t, v, m, msgs)
	kept := eval[int](v.participant, fmt.Sprintf(`T.chat.messages.filter((x) => x.author === %q).length`, m.self))
	if allowed := chatBurst + int(chatRate*took.Seconds()) + 1; kept > allowed {
		t.Errorf("V let %d of the flood through its budgets in %v, want at most %d (stats %v)", kept, took, allowed, chatStats(v))
	}
	v.until(`new Promise(requestAnimationFrame).then(() => document.querySelectorAll("#chat .msg").length === T.chat.messages.length)`, "every message kept drawn")
	if !slices.Contains(eval[[]string](v.participant, `T.chatLines()`), "B before the flood") {
		t.Errorf("the flood evicted B's message")
	}
	eval[string](b.participant, `T.chat.send("B after the flood").id`)
	v.until(`T.chatLines().includes("B after the flood")`, "B's message after the flood at V")

	// The acknowledgements of what V took: every message kept acknowledged
	// once, in at most one chat.seen per gathering time of the flood (and
	// one more for the last gathered), not one each.
	m.waitFor(ctx, "V's acknowledgements of the flood", func() bool { return m.seenIDs.Load() >= int64(kept) })
	if n, ids := m.seenMessages.Load(), m.seenIDs.Load(); ids != int64(kept) || n > int64(took/seenDelay)+2 {
		t.Errorf("V sent %d chat.seen with %d ids for the %d messages it kept in %v", n, ids, kept, took)
	}

	// A flood of the mesh's own messages (a video's view size) is cut too.
	views := make([]string, flood)
	for i := range views {
		views[i] = fmt.Sprintf(`{"type":"mesh.view","kind":"camera","visible":true,"width":%d,"height":480}`, 320+i%200)
	}
	// (B sends nothing meanwhile: what V lets through is M's.)
	before := eval[int](v.participant, `T.mesh.inbound.allowed`)
	took = floodAnswered(t, v, m, views)
	if let, allowed := eval[int](v.participant, `T.mesh.inbound.allowed`)-before, meshBurst+int(meshRate*took.Seconds())+1; let > allowed {
		t.Errorf("V's mesh let %d of the flood through in %v, want at most %d", let, took, allowed)
	}
	if err := m.failure(); err != nil {
		t.Error(err)
	}
}

// floodAnswered sends msgs from m to v as fast as its data channel takes
// them, and checks that v's page answers a trivial evaluation within a
// second throughout, until v's mesh has let through or refused all of them
// and v's chat has dealt with those it let through. It returns how long
// that took, measured in v's page from before the first message went.
func floodAnswered(t *testing.T, v *meshMember, m *interopPeer, msgs []string) time.Duration {
	t.Helper()
	count := fmt.Sprintf(`T.mesh.inbound.allowed + T.mesh.inbound.refused - %d`, eval[int](v.participant, `T.floodStart = performance.now(), T.mesh.inbound.allowed + T.mesh.inbound.refused`))
	for _, msg := range msgs {
		if err := m.dc.SendText(msg); err != nil {
			t.Fatalf("M: flood: %v", err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		start := time.Now()
		eval[int](v.participant, `1 + 1`)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("V's page took %v to answer during the flood", took)
		}
		if ms := eval[float64](v.participant, `T.chat.idle().then(() => `+count+` >= `+fmt.Sprint(len(msgs))+` ? performance.now() - T.floodStart : -1)`); ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
		if time.Now().After(deadline) {
			t.Fatalf("V dealt with %d of the %d messages", eval[int](v.participant, count), len(msgs))
		}
		<-tick.C
	}
}
