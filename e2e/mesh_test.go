package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// meshWait bounds each in-page wait of these tests: generous, as a loaded
// machine decodes video slowly.
const meshWait = 15 * time.Second

// These tests drive the client's mesh, media and chat modules directly
// (web/static/js/mesh.js, media.js, chat.js), without the room page: each
// participant loads a plain page of the real server, imports the modules,
// and speaks the protocol to the server's WebSocket itself (meshDriverJS).
// Signalling goes through the real server; media and chat go browser to
// browser over loopback, with Chromium's fake devices.

// meshDriverJS installs window.T, a small test driver: a raw protocol
// client, a Mesh, a Chat, LocalMedia and RemoteAudio wired as the room page
// wires them, plus probes. Remote videos are shown in <video> elements
// (data-peer, data-kind) so that decoded frames can be counted.
const meshDriverJS = `(async () => {
	if (window.T) return true;
	` + testKeysJS + `
	const [{ Mesh }, { Chat, renderText }, { LocalMedia, RemoteAudio }] = await Promise.all([
		import('/js/mesh.js'), import('/js/chat.js'), import('/js/media.js')]);
	const T = window.T = { errors: [], signalLog: [], events: [], held: null, candidateFirst: false, dropCandidates: false, autoAdd: true, renderText, names: new Map() };
	const keys = await testKeys();
	T.learnKey = keys.learn;
	const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws', 'lepeerchat.v1');
	const pending = new Map();
	let nextId = 1;
	await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('WebSocket failed')); });
	ws.onmessage = (ev) => {
		const m = JSON.parse(ev.data);
		if (typeof m.re === 'number' && pending.has(m.re)) {
			const p = pending.get(m.re);
			pending.delete(m.re);
			if (m.type === 'error') p.reject(new Error(m.error.code + ': ' + m.error.message)); else p.resolve(m);
			return;
		}
		const mesh = T.mesh;
		if (m.type === 'signal') {
			const d = m.data || {};
			T.signalLog.push({ from: m.from, what: T.what(d) });
			if (T.dropCandidates && d.candidate) return;
			mesh?.handleSignal(m.from, d);
		} else if (m.type === 'member.joined' || m.type === 'member.connected') {
			T.names.set(m.member.id, m.member.name);
			if (T.autoAdd) mesh?.addPeer(m.member.id);
		} else if (m.type === 'member.left') {
			mesh?.removePeer(m.member);
		} else if (m.type === 'member.disconnected') {
			mesh?.peerOffline(m.member.id);
		}
	};
	T.call = (type, fields) => new Promise((resolve, reject) => {
		const id = nextId++;
		pending.set(id, { resolve, reject });
		ws.send(JSON.stringify(Object.assign({ id, type }, fields || {})));
	});
	const transmit = (to, data) => T.call('signal', { to, data }).then(() => {});
	// The signaller handed to the mesh, with two test switches: hold
	// (buffer everything until release) and candidateFirst (send each offer
	// only once ICE gathering is complete, so every candidate goes first).
	T.sentLog = [];
	T.what = (d) => d.description ? d.description.type : d.candidate ? 'candidate' : d.hello ? (d.restart ? 'restart' : 'hello') : d.media ? 'media' : 'other';
	const send = async (to, data) => {
		T.sentLog.push({ to, what: T.what(data) });
		if (T.held) { T.held.push([to, data]); return; }
		if (T.candidateFirst && data.description && data.description.type === 'offer') {
			const pc = T.mesh.connection(to);
			await new Promise((resolve) => {
				const check = () => { if (!pc || pc.iceGatheringState === 'complete') resolve(); };
				pc?.addEventListener('icegatheringstatechange', check);
				check();
			});
		}
		return transmit(to, data);
	};
	T.hold = () => { T.held = []; };
	T.release = () => {
		const h = T.held || [];
		T.held = null;
		for (const [to, d] of h) transmit(to, d).catch((e) => T.errors.push('release: ' + e));
		return h.length;
	};
	T.start = (reply, autoAdd) => {
		T.self = reply.self.id;
		if (reply.self.secret) T.secret = reply.self.secret;
		T.room = reply.room.id;
		T.autoAdd = autoAdd !== false;
		const mesh = T.mesh = new Mesh({ selfId: T.self, signaller: { send }, statsIntervalMs: 500 });
		for (const m of reply.room.members) T.names.set(m.id, m.name);
		const chat = T.chat = new Chat({ selfId: T.self, roomId: T.room, signer: keys.signer(T.self), transport: mesh });
		T.audio = new RemoteAudio();
		T.media = new LocalMedia();
		T.media.on('trackchange', (e) => {
			T.events.push('trackchange ' + e.detail.kind + ' ' + (e.detail.track ? 'on' : 'off'));
			mesh.setLocalTrack(e.detail.kind, e.detail.track).catch((err) => T.errors.push('setLocalTrack: ' + err));
		});
		T.media.on('ended', (e) => T.events.push('ended ' + e.detail.kind));
		mesh.on('error', (e) => T.errors.push(e.detail.context + ': ' + e.detail.error));
		keys.attach(mesh, chat);
		mesh.on('track', (e) => {
			const { id, kind, stream, track } = e.detail;
			if (track.kind === 'video') {
				const v = document.createElement('video');
				Object.assign(v, { muted: true, autoplay: true, playsInline: true, width: 320, height: 240, srcObject: stream });
				v.dataset.peer = id;
				v.dataset.kind = kind;
				document.body.append(v);
				v.play().catch(() => {});
			} else {
				T.audio.attach(id, kind, stream);
			}
		});
		mesh.on('trackended', (e) => {
			T.video(e.detail.id, e.detail.kind)?.remove();
			T.audio.detach(e.detail.id, e.detail.kind);
		});
		addEventListener('pagehide', () => mesh.close());
		if (T.autoAdd) for (const m of reply.room.members) if (m.online && m.id !== T.self) mesh.addPeer(m.id);
		return { room: T.room, self: T.self };
	};
	T.create = async (room, name, autoAdd) => T.start(await T.call('create', { room, name }), autoAdd);
	T.invite = async () => (await T.call('invite', {})).invite.token;
	T.rejoin = async (room, member, secret) => { T.secret = secret; return T.start(await T.call('rejoin', { room, member, secret })); };
	T.join = async (room, invite, name, autoAdd) => T.start(await T.call('join', { room, invite, name }), autoAdd);
	// Probes.
	T.video = (id, kind) => [...document.querySelectorAll('video')].find((v) => v.dataset.peer === id && v.dataset.kind === kind);
	T.frames = (id, kind) => { const v = T.video(id, kind); return v ? v.getVideoPlaybackQuality().totalVideoFrames : -1; };
	T.kinds = (id) => [...T.mesh.remoteMedia(id).keys()].sort().join(',');
	T.state = (id) => T.mesh.peerState(id)?.state ?? 'none';
	T.inbound = async (id, kind) => {
		const r = T.mesh.remoteMedia(id).get(kind);
		const n = { bytes: -1, packets: -1 };
		if (!r) return n;
		(await r.receiver.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') { n.bytes = s.bytesReceived || 0; n.packets = s.packetsReceived || 0; } });
		return n;
	};
	// until resolves once the async predicate f is truthy, or rejects with
	// what and the driver's diagnostics after ms.
	T.until = async (f, ms, what) => {
		const end = performance.now() + ms;
		for (;;) {
			const v = await f();
			if (v) return v;
			if (performance.now() > end) throw new Error('timed out waiting for ' + what + '; ' + T.describe());
			await new Promise((r) => setTimeout(r, 50));
		}
	};
	T.describe = () => 'errors: [' + T.errors.join(' | ') + '] peers: ' + (T.mesh ? T.mesh.peers.map((id) => {
		const pc = T.mesh.connection(id);
		return id + ' ' + T.state(id) + ' pc=' + pc.connectionState + '/' + pc.iceConnectionState + '/' + pc.signalingState + ' kinds=' + T.kinds(id) +
			' in=' + T.signalLog.filter((s) => s.from === id).map((s) => s.what[0]).join('') +
			' out=' + T.sentLog.filter((s) => s.to === id).map((s) => s.what[0]).join('') + ' polite=' + (T.self < id) + ' gathering=' + pc.iceGatheringState;
	}).join('; ') : 'none');
	T.chatLines = () => T.chat.messages.map((m) => m.text);
	return true;
})()`

// meshMember is a participant driven by meshDriverJS, with its member id.
type meshMember struct {
	*participant
	id string
}

// meshOpen opens a participant on a plain page of srv (a stylesheet: no
// client code runs) and installs the driver.
func meshOpen(t *testing.T, srv *server, name string) *participant {
	t.Helper()
	p := newParticipant(t, srv, name)
	p.open("/mesh-test.txt") // a 404: a plain text page of the server
	if !eval[bool](p, meshDriverJS) {
		t.Fatalf("%s: the driver did not start", name)
	}
	return p
}

// meshRoom makes a room: the first name creates it, each other joins with
// an invitation of the first. autoAdd false makes the members wait for a
// signal instead of connecting to the others by themselves.
func meshRoom(t *testing.T, srv *server, autoAdd bool, names ...string) []*meshMember {
	t.Helper()
	var out []*meshMember
	var roomID string
	for i, name := range names {
		p := meshOpen(t, srv, name)
		var id string
		if i == 0 {
			r := eval[map[string]string](p, fmt.Sprintf(`T.create("Mesh room", %q, %v)`, name, autoAdd))
			roomID, id = r["room"], r["self"]
		} else {
			token := eval[string](out[0].participant, `T.invite()`)
			id = eval[map[string]string](p, fmt.Sprintf(`T.join(%q, %q, %q, %v)`, roomID, token, name, autoAdd))["self"]
		}
		out = append(out, &meshMember{participant: p, id: id})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range out {
				t.Logf("%s (%s): %s", m.name, m.id, eval[string](m.participant, `T.describe()`))
			}
		}
	})
	return out
}

// directPair is a room of two members, A and B, on a server of their own,
// once each sees the other connected directly.
func directPair(t *testing.T) []*meshMember {
	t.Helper()
	ms := meshRoom(t, startServer(t, ""), true, "A", "B")
	ms[0].waitConnected("direct", ms[1])
	ms[1].waitConnected("direct", ms[0])
	return ms
}

// meshJoin adds one more member to the room of owner.
func meshJoin(t *testing.T, srv *server, owner *meshMember, name string) *meshMember {
	t.Helper()
	p := meshOpen(t, srv, name)
	roomID := eval[string](owner.participant, `T.room`)
	token := eval[string](owner.participant, `T.invite()`)
	id := eval[map[string]string](p, fmt.Sprintf(`T.join(%q, %q, %q)`, roomID, token, name))["self"]
	return &meshMember{participant: p, id: id}
}

// until waits, in the page, for an async JavaScript predicate.
func (m *meshMember) until(pred, what string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(m.ctx, meshWait+5*time.Second)
	defer cancel()
	expr := fmt.Sprintf(`T.until(async () => %s, %d, %q)`, pred, meshWait.Milliseconds(), what)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise)); err != nil {
		m.t.Fatalf("%s: %v", m.name, err)
	}
}

// waitConnected waits until m sees each of others as state.
func (m *meshMember) waitConnected(state string, others ...*meshMember) {
	m.t.Helper()
	for _, o := range others {
		m.until(fmt.Sprintf(`T.state(%q) === %q`, o.id, state), fmt.Sprintf("%s to see %s as %s", m.name, o.name, state))
	}
}

// noErrors fails the test if the driver recorded errors.
func (m *meshMember) noErrors() {
	m.t.Helper()
	if errs := eval[[]string](m.participant, `T.errors`); len(errs) > 0 {
		m.t.Errorf("%s: errors: %s", m.name, strings.Join(errs, "\n\t"))
	}
}

// videoAdvances waits until m shows from's video of kind with frames being
// decoded: a playing <video> whose frame count keeps growing.
func (m *meshMember) videoAdvances(from *meshMember, kind string) {
	m.t.Helper()
	m.until(fmt.Sprintf(`T.frames(%q, %q) > 0`, from.id, kind), fmt.Sprintf("%s's %s on %s's page", from.name, kind, m.name))
	start := eval[int](m.participant, fmt.Sprintf(`T.frames(%q, %q)`, from.id, kind))
	m.until(fmt.Sprintf(`T.frames(%q, %q) >= %d`, from.id, kind, start+5), fmt.Sprintf("%s's %s frames advancing on %s's page", from.name, kind, m.name))
}

// audioFlows waits until the audio m receives from from, of kind, keeps
// arriving: inbound bytes growing, and half a second of 20 ms packets.
func (m *meshMember) audioFlows(from *meshMember, kind string) {
	m.t.Helper()
	m.until(fmt.Sprintf(`(await T.inbound(%q, %q)).bytes > 0`, from.id, kind), fmt.Sprintf("%s's %s reaching %s", from.name, kind, m.name))
	start := eval[map[string]int](m.participant, fmt.Sprintf(`T.inbound(%q, %q)`, from.id, kind))
	m.until(fmt.Sprintf(`(async (n) => n.bytes > %d && n.packets >= %d)(await T.inbound(%q, %q))`, start["bytes"], start["packets"]+25, from.id, kind),
		fmt.Sprintf("%s's %s bytes growing at %s", from.name, kind, m.name))
}

// TestMeshThreeParticipantsConnectDirectly checks that three members of a
// room, each in its own browser context, connect to each other through
// signalling relayed by the server, and report each connection as direct
// with a round-trip time.
func TestMeshThreeParticipantsConnectDirectly(t *testing.T) {
	srv := startServer(t, "")
	ms := meshRoom(t, srv, true, "A", "B", "C")
	for _, m := range ms {
		var others []*meshMember
		for _, o := range ms {
			if o != m {
				others = append(others, o)
			}
		}
		m.waitConnected("direct", others...)
		for _, o := range others {
			m.until(fmt.Sprintf(`typeof T.mesh.peerState(%q).rttMs === "number"`, o.id), "a round-trip time")
			m.until(fmt.Sprintf(`T.mesh.openPeers.includes(%q)`, o.id), "the data channel open")
		}
	}
	for _, m := range ms {
		m.noErrors()
	}
}

// TestMeshChatOrderSeenAndHistory checks the chat over data channels: three
// members see the same order, an order that follows causality even from a
// member whose clock is an hour behind; authors get "seen" marks; invalid
// messages from a peer are dropped; a late joiner receives the history,
// without duplicates; text renders as text and links only as http(s) links.
func TestMeshChatOrderSeenAndHistory(t *testing.T) {
	srv := startServer(t, "")
	ms := meshRoom(t, srv, true, "A", "B", "C")
	a, b, c := ms[0], ms[1], ms[2]
	for _, m := range ms {
		m.until(`T.mesh.openPeers.length === 2`, "both data channels open")
	}
	// C's clock is an hour late: it must not matter.
	eval[bool](c.participant, `(() => { const real = Date.now; Date.now = () => real() - 3600e3; return true })()`)

	eval[string](a.participant, `T.chat.send("a1: hello").id`)
	b.until(`T.chatLines().includes("a1: hello")`, "a1 at B")
	c.until(`T.chatLines().includes("a1: hello")`, "a1 at C")
	// Replies, after a1 was seen, and concurrent with each other.
	eval[string](c.participant, `T.chat.send("c1: reply from the past\nsecond line").id`)
	eval[string](b.participant, `T.chat.send("b1: reply").id`)
	eval[string](a.participant, `T.chat.send("a2: <img src=x onerror=\"window.__pwned=1\"> see https://example.org/page?q=1.").id`)
	for _, m := range ms {
		m.until(`T.chatLines().length === 4`, "four messages")
	}
	orders := make([][]string, len(ms))
	for i, m := range ms {
		orders[i] = eval[[]string](m.participant, `T.chatLines()`)
	}
	for i := range ms {
		if !slices.Equal(orders[i], orders[0]) {
			t.Fatalf("orders differ:\n%s: %q\n%s: %q", ms[0].name, orders[0], ms[i].name, orders[i])
		}
	}
	if orders[0][0] != "a1: hello" {
		t.Errorf("a1 is not first although every other message answers it: %q", orders[0])
	}
	t.Logf("order everywhere: %q", orders[0])

	// Seen marks: A's first message was acknowledged by B and C.
	a.until(`T.chat.messages.find((m) => m.text === "a1: hello").seenBy.size === 2`, "a1 seen by B and C")

	// Text stays text; only the http(s) URL becomes a link.
	r := eval[map[string]any](b.participant, `(() => {
		const m = T.chat.messages.find((m) => m.text.startsWith("a2:"));
		const div = document.createElement("div");
		div.append(T.renderText(m.text + " javascript:alert(1)"));
		const a = div.querySelectorAll("a");
		return { elements: div.querySelectorAll("*").length, href: a[0]?.href ?? "", rel: a[0]?.rel ?? "", target: a[0]?.target ?? "", pwned: "__pwned" in window };
	})()`)
	if r["elements"] != float64(1) || r["href"] != "https://example.org/page?q=1" || r["rel"] != "noopener noreferrer" || r["target"] != "_blank" || r["pwned"] != false {
		t.Errorf("rendered message: %v", r)
	}

	// A peer sending invalid or oversized messages is ignored.
	eval[bool](b.participant, fmt.Sprintf(`(() => {
		const to = %q;
		T.mesh.send(to, { type: "chat.msg", id: "too-long", lamport: 99, text: "x".repeat(2001) });
		T.mesh.send(to, { type: "chat.msg", id: "bad id!", lamport: 99, text: "bad id" });
		T.mesh.send(to, { type: "chat.msg", id: "bad-lamport", lamport: -1, text: "bad lamport" });
		T.mesh.send(to, { type: "chat.msg", id: "control", lamport: 99, text: "bell\u0007" });
		T.mesh.send(to, { type: "chat.history", messages: [{ id: "h1", author: "nobody", lamport: "1", text: "bad" }] });
		T.mesh.send(to, { type: "chat.msg", id: "unsigned", lamport: 99, text: "unsigned", time: 0 });
		T.chat.send("still fine");
		return true;
	})()`, a.id))
	a.until(`T.chatLines().includes("still fine")`, "the valid message after the invalid ones")
	if got := eval[int](a.participant, `T.chat.messages.length`); got != 5 {
		t.Errorf("A keeps %d messages after the invalid ones, want 5: %q", got, eval[[]string](a.participant, `T.chatLines()`))
	}

	// A late joiner gets the history from the peers already there (each
	// sends it: the merge keeps one copy of each).
	d := meshJoin(t, srv, a, "D")
	d.waitConnected("direct", a, b, c)
	d.until(`T.chatLines().length === 5`, "the history")
	got := eval[[]string](d.participant, `T.chatLines()`)
	want := eval[[]string](a.participant, `T.chatLines()`)
	if !slices.Equal(got, want) {
		t.Errorf("late joiner's history %q, want %q", got, want)
	}
	// And the conversation goes on with D in it, after everything before.
	eval[string](d.participant, `T.chat.send("d1: hi all").id`)
	for _, m := range []*meshMember{a, b, c, d} {
		m.until(`T.chatLines().at(-1) === "d1: hi all"`, "d1 last")
	}
	for _, m := range []*meshMember{a, b, c, d} {
		m.noErrors()
	}
}

// TestMeshMediaShareAndStop checks media across a three-person mesh: A
// shares its microphone and screen, B its camera; the others receive each
// (video frames decoded in a playing <video>, audio bytes arriving); a
// screen share stopped from the browser's own controls is noticed and
// disappears everywhere; sharing again reuses the transceivers instead of
// piling up new ones; a local volume of 0 silences A for B only.
func TestMeshMediaShareAndStop(t *testing.T) {
	srv := startServer(t, "")
	ms := meshRoom(t, srv, true, "A", "B", "C")
	a, b, c := ms[0], ms[1], ms[2]
	a.waitConnected("direct", b, c)
	b.waitConnected("direct", a, c)
	c.waitConnected("direct", a, b)

	eval[bool](a.participant, `T.media.startMicrophone().then(() => true)`)
	eval[bool](a.participant, `T.media.startScreen().then(() => true)`)
	eval[bool](b.participant, `T.media.startCamera().then(() => true)`)

	for _, m := range []*meshMember{b, c} {
		m.until(fmt.Sprintf(`T.kinds(%q).includes("screen") && T.kinds(%q).includes("mic")`, a.id, a.id), "A's microphone and screen")
		m.videoAdvances(a, "screen")
		m.audioFlows(a, "mic")
	}
	for _, m := range []*meshMember{a, c} {
		m.until(fmt.Sprintf(`T.kinds(%q) === "camera"`, b.id), "B's camera only")
		m.videoAdvances(b, "camera")
	}
	hadAudio := eval[bool](a.participant, `T.media.track("screen-audio") !== null`)
	t.Logf("the fake screen came with audio: %v", hadAudio)
	transceivers := func(m, of *meshMember) int {
		return eval[int](m.participant, fmt.Sprintf(`T.mesh.connection(%q).getTransceivers().length`, of.id))
	}
	before := transceivers(a, b)

	// The share is stopped from the browser's own controls: the track ends
	// by itself (as when the user clicks "Stop sharing").
	eval[bool](a.participant, `(() => { T.media.track("screen").dispatchEvent(new Event("ended")); return true })()`)
	a.until(`T.events.includes("ended screen")`, "the share's end announced")
	if eval[bool](a.participant, `T.media.track("screen") !== null || T.mesh.localTrack("screen") !== null`) {
		t.Errorf("A still has a screen track after the browser stopped it")
	}
	for _, m := range []*meshMember{b, c} {
		m.until(fmt.Sprintf(`!T.kinds(%q).includes("screen") && !T.video(%q, "screen")`, a.id, a.id), "A's screen gone")
		m.audioFlows(a, "mic") // the microphone goes on
	}

	// Sharing again reuses the freed transceiver.
	eval[bool](a.participant, `T.media.startScreen().then(() => true)`)
	for _, m := range []*meshMember{b, c} {
		m.videoAdvances(a, "screen")
	}
	if after := transceivers(a, b); after != before {
		t.Errorf("A→B has %d transceivers after stopping and sharing again, had %d", after, before)
	}
	// Camera off and on again: same count on B's side too.
	beforeB := transceivers(b, a)
	eval[bool](b.participant, `(T.media.stop("camera"), true)`)
	a.until(fmt.Sprintf(`T.kinds(%q) === ""`, b.id), "B's camera gone")
	eval[bool](b.participant, `T.media.startCamera().then(() => true)`)
	a.videoAdvances(b, "camera")
	if after := transceivers(b, a); after != beforeB {
		t.Errorf("B→A has %d transceivers after camera off and on, had %d", after, beforeB)
	}

	// B turns A down to 0: silent for B only.
	eval[bool](b.participant, fmt.Sprintf(`(T.audio.setVolume(%q, 0), true)`, a.id))
	if !eval[bool](b.participant, fmt.Sprintf(`T.audio.elements(%q).every((el) => el.muted && el.volume === 0)`, a.id)) {
		t.Errorf("A's audio is not silent at B after setting its volume to 0")
	}
	if !eval[bool](c.participant, fmt.Sprintf(`T.audio.elements(%q).length > 0 && T.audio.elements(%q).every((el) => !el.muted && el.volume === 1)`, a.id, a.id)) {
		t.Errorf("A's audio is silent at C too")
	}
	// Above 100 % the gain goes through Web Audio, the element kept muted as a sink.
	eval[bool](b.participant, fmt.Sprintf(`(T.audio.setVolume(%q, 1.5), true)`, a.id))
	if !eval[bool](b.participant, fmt.Sprintf(`T.audio.elements(%q).every((el) => el.muted)`, a.id)) {
		t.Errorf("A's audio element at B is not muted while Web Audio plays it at 150 %%")
	}

	// Stopping the microphone removes it everywhere.
	eval[bool](a.participant, `(T.media.stop("mic"), true)`)
	for _, m := range []*meshMember{b, c} {
		m.until(fmt.Sprintf(`!T.kinds(%q).includes("mic") && T.audio.elements(%q).every((el) => el.dataset.kind !== "mic")`, a.id, a.id), "A's microphone gone")
	}
	for _, m := range ms {
		m.noErrors()
	}
}

// TestMeshGlareResolves makes both sides of a connection offer at the same
// time (both restart ICE, each holding its outgoing signals until both have
// an offer outstanding) and checks that perfect negotiation settles it:
// both end stable and connected, and the connection carries chat and
// microphones both ways afterwards.
//
// Video is not checked after the collision: with Chromium 156, a video
// received on a connection that went through an offer collision sometimes
// has its frames decoded but never delivered to its track (the <video>
// stays empty), on either side. Two lepeerchat pages cannot collide any
// more (the impolite side makes every offer: media goes on fixed slots,
// the polite side asks for restarts), which TestMeshMediaNeedsNoNegotiation
// checks; a collision needs another implementation or this test's forcing.
func TestMeshGlareResolves(t *testing.T) {
	ms := directPair(t)
	a, b := ms[0], ms[1]

	for _, m := range ms {
		eval[bool](m.participant, `(T.hold(), true)`)
	}
	eval[bool](a.participant, fmt.Sprintf(`(T.mesh.connection(%q).restartIce(), true)`, b.id))
	eval[bool](b.participant, fmt.Sprintf(`(T.mesh.connection(%q).restartIce(), true)`, a.id))
	// Both offers are made and held: they will cross.
	const offerHeld = `T.mesh.connection(%q).signalingState === "have-local-offer" && T.held.some(([, d]) => d.description?.type === "offer")`
	a.until(fmt.Sprintf(offerHeld, b.id), "A's offer outstanding")
	b.until(fmt.Sprintf(offerHeld, a.id), "B's offer outstanding")
	eval[int](a.participant, `T.release()`)
	eval[int](b.participant, `T.release()`)
	for _, p := range [][2]*meshMember{{a, b}, {b, a}} {
		p[0].until(fmt.Sprintf(`T.mesh.connection(%q).signalingState === "stable" && T.mesh.connection(%q).connectionState === "connected"`, p[1].id, p[1].id), "a stable, connected connection")
	}
	for _, p := range [][2]*meshMember{{a, b}, {b, a}} {
		text := "after the collision, from " + p[0].name
		eval[string](p[0].participant, fmt.Sprintf(`T.chat.send(%q).id`, text))
		p[1].until(fmt.Sprintf(`T.chatLines().includes(%q)`, text), "the chat message")
	}
	for _, m := range ms {
		eval[bool](m.participant, `T.media.startMicrophone().then(() => true)`)
	}
	a.audioFlows(b, "mic")
	b.audioFlows(a, "mic")
	for _, m := range ms {
		m.noErrors()
	}
}

// TestMeshMediaNeedsNoNegotiation turns both cameras of a connection on
// at the same moment, then off, then on again: no offer or answer is made
// (the kinds have fixed slots, negotiated once), so nothing can collide,
// and each side receives the other's camera every time.
func TestMeshMediaNeedsNoNegotiation(t *testing.T) {
	ms := directPair(t)
	a, b := ms[0], ms[1]
	descriptions := func(m *meshMember) int {
		return eval[int](m.participant, `T.sentLog.filter((s) => s.what === "offer" || s.what === "answer").length`)
	}
	before := [2]int{descriptions(a), descriptions(b)}
	for round := range 2 {
		for _, m := range ms {
			eval[bool](m.participant, `(T.media.startCamera(), true)`)
		}
		a.videoAdvances(b, "camera")
		b.videoAdvances(a, "camera")
		for _, m := range ms {
			eval[bool](m.participant, `(T.media.stop("camera"), true)`)
		}
		for _, p := range [][2]*meshMember{{a, b}, {b, a}} {
			p[0].until(fmt.Sprintf(`T.kinds(%q) === "" && !T.video(%q, "camera")`, p[1].id, p[1].id), fmt.Sprintf("%s's camera gone (round %d)", p[1].name, round))
		}
	}
	if after := [2]int{descriptions(a), descriptions(b)}; after != before {
		t.Errorf("turning cameras on and off renegotiated: descriptions sent by A and B went from %v to %v", before, after)
	}
	for _, m := range ms {
		m.noErrors()
	}
}

// TestMeshEarlyCandidateIsKept delivers every ICE candidate of the offerer
// before its offer, to a peer that has no connection yet, and drops the
// answerer's candidates at the offerer: the connection can only come up if
// the early candidates were kept until the offer and then applied.
func TestMeshEarlyCandidateIsKept(t *testing.T) {
	srv := startServer(t, "")
	ms := meshRoom(t, srv, false, "A", "B")
	// The receiver must be the polite side (the smaller id), so that the
	// offer it makes itself once the first candidate creates its
	// connection yields to the sender's.
	sender, receiver := ms[0], ms[1]
	if sender.id < receiver.id {
		sender, receiver = receiver, sender
	}
	eval[bool](sender.participant, `(T.candidateFirst = true, T.dropCandidates = true, true)`)
	eval[bool](sender.participant, fmt.Sprintf(`(T.mesh.addPeer(%q), true)`, receiver.id))

	receiver.waitConnected("direct", sender)
	sender.waitConnected("direct", receiver)
	log := eval[[]map[string]string](receiver.participant, `T.signalLog`)
	if len(log) == 0 || log[0]["what"] != "candidate" {
		t.Fatalf("the receiver's first signal was %v, want a candidate", log)
	}
	early := 0
	for _, s := range log {
		if s["what"] != "candidate" {
			break
		}
		early++
	}
	t.Logf("%d candidates arrived before the offer; signals: %v", early, log)
	// The data channel works.
	eval[string](sender.participant, `T.chat.send("over the early candidates").id`)
	receiver.until(`T.chatLines().includes("over the early candidates")`, "the message")
	for _, m := range ms {
		m.noErrors()
	}
}

// TestMeshReloadAndIceRestart checks that a member who reloads its page
// (a new peer connection on its side, the old one dead) is connected again
// with its media, whichever side of the connection it was, and that an ICE
// restart asked for by either side renegotiates new ICE credentials while
// the call goes on.
func TestMeshReloadAndIceRestart(t *testing.T) {
	srv := startServer(t, "")
	ms := meshRoom(t, srv, true, "A", "B")
	a, b := ms[0], ms[1]
	eval[bool](a.participant, `T.media.startCamera().then(() => true)`)
	eval[bool](b.participant, `T.media.startMicrophone().then(() => true)`)
	b.videoAdvances(a, "camera")
	a.audioFlows(b, "mic")

	ufrag := func(m, of *meshMember) string {
		return eval[string](m.participant, fmt.Sprintf(`T.mesh.connection(%q).remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1]`, of.id))
	}
	for _, p := range [][2]*meshMember{{a, b}, {b, a}} {
		asker, other := p[0], p[1]
		before := ufrag(other, asker)
		eval[bool](asker.participant, fmt.Sprintf(`(T.mesh.restartIce(%q), true)`, other.id))
		other.until(fmt.Sprintf(`T.mesh.connection(%q).remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1] !== %q`, asker.id, before),
			fmt.Sprintf("new ICE credentials after %s asked for a restart", asker.name))
		asker.waitConnected("direct", other)
		b.videoAdvances(a, "camera")
	}

	// Each reloads in turn: the other notices the new connection, drops
	// the old one and gets the media again.
	for _, m := range []*meshMember{b, a} {
		other := a
		if m == a {
			other = b
		}
		room := eval[string](m.participant, `T.room`)
		secret := eval[string](m.participant, `T.secret`)
		kind := map[*meshMember]string{a: "camera", b: "mic"}[m]
		m.reload()
		if !eval[bool](m.participant, meshDriverJS) {
			t.Fatalf("%s: the driver did not start after the reload", m.name)
		}
		eval[map[string]string](m.participant, fmt.Sprintf(`T.rejoin(%q, %q, %q)`, room, m.id, secret))
		if kind == "camera" {
			eval[bool](m.participant, `T.media.startCamera().then(() => true)`)
		} else {
			eval[bool](m.participant, `T.media.startMicrophone().then(() => true)`)
		}
		m.waitConnected("direct", other)
		other.waitConnected("direct", m)
		if kind == "camera" {
			other.videoAdvances(m, "camera")
		} else {
			other.audioFlows(m, "mic")
		}
		if n := eval[int](other.participant, `document.querySelectorAll("video").length`); n > 1 {
			t.Errorf("%s shows %d videos after %s reloaded, want at most 1", other.name, n, m.name)
		}
	}
	for _, m := range ms {
		m.noErrors()
	}
}

// TestMeshRemoteViewAndSpeaking checks the cheap paths: a receiver that
// hides a video makes its sender stop encoding it for that receiver (and
// scale it to the size shown once visible again), with no renegotiation;
// speaking is detected from the receiver's audio levels for a remote
// member and from one AnalyserNode for the local microphone.
func TestMeshRemoteViewAndSpeaking(t *testing.T) {
	srv := startServer(t, "")
	ms := meshRoom(t, srv, true, "A", "B")
	a, b := ms[0], ms[1]
	eval[bool](a.participant, `T.media.startCamera().then(() => T.media.startMicrophone()).then(() => true)`)
	b.videoAdvances(a, "camera")

	encoding := fmt.Sprintf(`T.mesh.connection(%q).getTransceivers().find((t) => t.sender.track?.kind === "video").sender.getParameters().encodings[0]`, b.id)
	signals := eval[int](a.participant, `T.signalLog.length`)
	eval[bool](b.participant, fmt.Sprintf(`(T.mesh.setRemoteView(%q, "camera", { visible: false }), true)`, a.id))
	a.until(encoding+`.active === false`, "the camera no longer encoded for B")
	eval[bool](b.participant, fmt.Sprintf(`(T.mesh.setRemoteView(%q, "camera", { visible: true, width: 160, height: 90 }), true)`, a.id))
	a.until(encoding+`.active === true && `+encoding+`.scaleResolutionDownBy >= 2`, "the camera encoded again, scaled down to the size shown")
	b.videoAdvances(a, "camera")
	if n := eval[int](a.participant, `T.signalLog.length`); n != signals {
		t.Errorf("hiding and showing a video went through signalling (%d messages): it must not renegotiate", n-signals)
	}

	// The same, driven by a VisibilityWatcher on the <video> element, as
	// the room page does: hidden by CSS, then shown again.
	eval[bool](b.participant, fmt.Sprintf(`import("/js/media.js").then(({ VisibilityWatcher }) => {
		T.seenAs = [];
		const v = T.video(%q, "camera");
		new VisibilityWatcher().watch(v, (visible, width, height) => {
			T.seenAs.push(visible);
			T.mesh.setRemoteView(%q, "camera", { visible, width, height });
		});
		return true;
	})`, a.id, a.id))
	b.until(`T.seenAs.at(-1) === true`, "the video reported visible")
	eval[bool](b.participant, fmt.Sprintf(`(T.video(%q, "camera").style.display = "none", true)`, a.id))
	b.until(`T.seenAs.at(-1) === false`, "the video reported hidden")
	a.until(encoding+`.active === false`, "the camera no longer encoded for B once its video is hidden")
	eval[bool](b.participant, fmt.Sprintf(`(T.video(%q, "camera").style.display = "", true)`, a.id))
	a.until(encoding+`.active === true`, "the camera encoded again once shown")
	b.videoAdvances(a, "camera")
	cap := eval[float64](a.participant, encoding+`.maxBitrate`)
	if cap != 600_000 {
		t.Errorf("camera bitrate cap in a room of two = %v, want 600000", cap)
	}

	// Speaking: the fake microphone beeps twice a second, its beeps fading
	// as the sender's gain control adapts (not speech): a low threshold.
	eval[bool](b.participant, fmt.Sprintf(`import("/js/media.js").then(({ SpeakingDetector }) => {
		T.speaking = [];
		T.detector = new SpeakingDetector({ threshold: 0.001 });
		T.detector.addEventListener("speaking", (e) => T.speaking.push(e.detail));
		T.detector.addReceiver(%q, T.mesh.remoteMedia(%q).get("mic").receiver);
		return true;
	})`, a.id, a.id))
	b.until(fmt.Sprintf(`T.speaking.some((s) => s.id === %q && s.speaking)`, a.id), "A detected speaking at B")
	// The fake microphone's own track is quiet (its beep is amplified
	// only on the way out): a lower threshold for it.
	eval[bool](a.participant, `import("/js/media.js").then(({ SpeakingDetector }) => {
		T.speaking = [];
		T.detector = new SpeakingDetector({ threshold: 0.0003 });
		T.detector.addEventListener("speaking", (e) => T.speaking.push(e.detail));
		T.detector.addTrack("self", T.media.track("mic"));
		return true;
	})`)
	a.until(`T.speaking.some((s) => s.id === "self" && s.speaking)`, "own speaking detected")
	for _, m := range ms {
		m.noErrors()
	}
}

// TestMeshLeavingPageRemovesPeer checks that a member whose page goes away
// leaves no ghost behind: the others drop its connection and its media
// once the server says it is gone and the connection closes.
func TestMeshLeavingPageRemovesPeer(t *testing.T) {
	srv := startServer(t, "")
	ms := meshRoom(t, srv, true, "A", "B", "C")
	a, b, c := ms[0], ms[1], ms[2]
	eval[bool](b.participant, `T.media.startCamera().then(() => true)`)
	a.videoAdvances(b, "camera")
	c.videoAdvances(b, "camera")

	b.open("/mesh-test.txt") // a new page: the old one, its socket and connections are gone
	for _, m := range []*meshMember{a, c} {
		m.until(fmt.Sprintf(`!T.mesh.peers.includes(%q) && !T.video(%q, "camera")`, b.id, b.id), "B gone")
	}
	a.waitConnected("direct", c)
	c.waitConnected("direct", a)
	for _, m := range []*meshMember{a, c} {
		m.noErrors()
	}
}
