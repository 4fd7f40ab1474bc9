package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// These tests drive the call through the room page as a person does:
// clicks on the media buttons, typing in the chat, keys on the sliders.
// Nothing in the client is imported; what a test cannot see on the page
// (inbound RTP bytes, the <audio> elements, which play off the document)
// it reads through probeJS, installed by the test before the page loads.

// callWait bounds the waits for media: a loaded machine (three browsers,
// the race detector, two cores) decodes video slowly.
const callWait = 25 * time.Second

// probeJS records, from the first line of every page, the peer
// connections the page makes, the media elements it plays and the screen
// captures it gets, in window.__probe. It changes nothing else.
const probeJS = `(() => {
	if (window.__probe) return;
	const probe = window.__probe = { pcs: [], media: new Set(), displays: [] };
	const Native = window.RTCPeerConnection;
	window.RTCPeerConnection = class extends Native {
		constructor(...args) { super(...args); probe.pcs.push(this); }
	};
	const play = HTMLMediaElement.prototype.play;
	const pause = HTMLMediaElement.prototype.pause;
	probe.log = [];
	const who = (el) => (el.closest?.(".tile")?.dataset.memberId || el.dataset.peer || "self") + "/" + (el.closest?.(".tile")?.dataset.kind || el.dataset.kind);
	HTMLMediaElement.prototype.play = function () { probe.media.add(this); probe.log.push([Math.round(performance.now()), "play", who(this), this.getVideoPlaybackQuality?.().totalVideoFrames]); return play.call(this); };
	HTMLMediaElement.prototype.pause = function () { probe.log.push([Math.round(performance.now()), "pause", who(this), this.getVideoPlaybackQuality?.().totalVideoFrames]); return pause.call(this); };
	const gdm = MediaDevices.prototype.getDisplayMedia;
	if (gdm) MediaDevices.prototype.getDisplayMedia = async function (...args) {
		const s = await gdm.apply(this, args);
		probe.displays.push(s);
		return s;
	};
	// The <audio> elements playing a member's kind of media.
	probe.audio = (id, kind) => [...probe.media].filter((e) => e.tagName === "AUDIO" && e.dataset.peer === id && e.srcObject && (!kind || e.dataset.kind === kind));
	// Bytes and packets received so far on the RTP receiver of a track.
	probe.inbound = async (track) => {
		const n = { bytes: -1, packets: -1 };
		for (const pc of probe.pcs) {
			if (pc.connectionState === "closed") continue;
			const r = pc.getReceivers().find((r) => r.track === track);
			if (!r) continue;
			(await r.getStats()).forEach((s) => { if (s.type === "inbound-rtp") { n.bytes = s.bytesReceived || 0; n.packets = s.packetsReceived || 0; } });
		}
		return n;
	};
	probe.audioIn = async (id) => {
		const el = probe.audio(id, "mic")[0];
		return el ? probe.inbound(el.srcObject.getAudioTracks()[0]) : { bytes: -1, packets: -1 };
	};
})()`

// viewShot saves what the viewport shows (not the whole page) as name.png,
// after scrolling the element sel to the top, when given.
func (p *participant) viewShot(name, sel string) {
	p.t.Helper()
	if sel != "" {
		eval[bool](p, fmt.Sprintf(`(document.querySelector(%q).scrollIntoView({ block: "start" }), true)`, sel))
		time.Sleep(300 * time.Millisecond) // the videos brought into view play again
	}
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("%s: screenshot %s: %v", p.name, name, err)
	}
	if err := os.MkdirAll(artifactsDir(), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(artifactsDir(), name+".png"), buf, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// newCaller is a participant with probeJS installed.
func newCaller(t *testing.T, srv *server, name string) *participant {
	t.Helper()
	p := newParticipant(t, srv, name)
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: probeJS}); err != nil {
		t.Fatalf("%s: install the probe: %v", name, err)
	}
	return p
}

// callRoom makes a room through the UI: the first name creates it, the
// others join by an invitation link. It returns the participants and
// their member ids.
func callRoom(t *testing.T, srv *server, room string, names ...string) ([]*participant, []string) {
	t.Helper()
	var ps []*participant
	var ids []string
	var link string
	for i, name := range names {
		p := newCaller(t, srv, string(rune('A'+i)))
		if i == 0 {
			p.createRoom(room, name)
			link = p.invite(false)
		} else {
			p.joinByLink(link, name)
		}
		ps = append(ps, p)
		ids = append(ids, eval[string](p, `document.querySelector("#member-list li[data-self=true]").dataset.memberId`))
	}
	return ps, ids
}

// until waits until an expression (which may be a promise) is truthy.
func (p *participant) until(expr, what string) {
	p.t.Helper()
	p.untilOr(expr, what, nil)
}

// untilOr is until, adding what more tells to the failure message.
func (p *participant) untilOr(expr, what string, more func() string) {
	p.t.Helper()
	deadline := time.Now().Add(callWait)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(async () => !!(`+expr+`))()`, chromedp.EvalAwaitPromise))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.screenshot("failed-" + p.name)
			dctx, dcancel := context.WithTimeout(p.ctx, 5*time.Second)
			diag, _ := chromedp.Run(dctx, chromedp.Evaluate[string](tilesJS, chromedp.EvalAwaitPromise))
			dcancel()
			extra := ""
			if more != nil {
				extra = more()
			}
			p.t.Fatalf("%s: waiting for %s: %v\ntiles: %s\n%s\n%s", p.name, what, err, diag, extra, p.pageText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tilesJS describes the tiles, for failure messages.
const tilesJS = `(async () => JSON.stringify(await Promise.all([...document.querySelectorAll("#streams .tile")].map(async (t) => {
	const v = t.querySelector("video"), r = t.getBoundingClientRect();
	const track = v.srcObject?.getVideoTracks()[0];
	const stats = track && !t.dataset.self ? await __probe.inbound(track) : null;
	let rtp = null;
	for (const pc of __probe.pcs) {
		const rc = pc.getReceivers().find((x) => x.track === track);
		if (rc) (await rc.getStats()).forEach((s) => { if (s.type === "inbound-rtp") rtp = { recv: s.framesReceived, dec: s.framesDecoded, key: s.keyFramesDecoded, drop: s.framesDropped, pli: s.pliCount, fir: s.firCount, nack: s.nackCount, w: s.frameWidth, bytes: s.bytesReceived }; });
	}
	return { id: t.dataset.memberId, kind: t.dataset.kind, paused: v.paused, ready: v.readyState, frames: v.getVideoPlaybackQuality().totalVideoFrames,
		tracks: v.srcObject ? v.srcObject.getTracks().map((x) => x.readyState + "/" + x.muted) : null, rect: [r.x, r.y, r.width, r.height], stats, rtp, size: [v.videoWidth, v.videoHeight] };
}))) + " log: " + JSON.stringify(__probe.log) + " now " + Math.round(performance.now()) + " pcs: " + JSON.stringify(__probe.pcs.map((pc) => ({
	conn: pc.connectionState, sig: pc.signalingState,
	tx: pc.getTransceivers().map((x) => [x.mid, x.direction, x.currentDirection, x.receiver.track.kind[0], x.sender.track ? x.sender.track.kind[0] : "-"].join(" ")),
	remote: (pc.remoteDescription?.sdp.match(/^a=(sendrecv|sendonly|recvonly|inactive)$/gm) || []).join(","),
	local: (pc.localDescription?.sdp.match(/^a=(sendrecv|sendonly|recvonly|inactive)$/gm) || []).join(","),
}))))()`

// sendersJS describes what the page sends, for failure messages.
const sendersJS = `(async () => JSON.stringify(await Promise.all(__probe.pcs.filter((pc) => pc.connectionState !== "closed").map(async (pc) =>
	Promise.all(pc.getSenders().filter((s) => s.track?.kind === "video").map(async (s) => {
		const e = s.getParameters().encodings[0] || {};
		let out = null;
		(await s.getStats()).forEach((x) => { if (x.type === "outbound-rtp") out = { sent: x.framesSent, enc: x.framesEncoded, key: x.keyFramesEncoded, pli: x.pliCount, q: x.qualityLimitationReason, w: x.frameWidth, active: x.active }; });
		return { active: e.active, scale: e.scaleResolutionDownBy, max: e.maxBitrate, out };
	}))))))()`

// peersDirect is true once every other member's row says "direct" with a
// round-trip time.
func peersDirect(others int) string {
	return fmt.Sprintf(`(() => {
		const s = [...document.querySelectorAll("#member-list li[data-self=false] .peer-state")];
		return s.length === %d && s.every((e) => e.dataset.peerState === "direct" && /^direct · \d+ ms$/.test(e.textContent));
	})()`, others)
}

// tileJS selects the video of a member's tile of a kind.
func tileJS(id, kind string) string {
	return fmt.Sprintf(`document.querySelector('#streams .tile[data-member-id=%q][data-kind=%q] video')`, id, kind)
}

// videoPlays waits until p shows id's video of kind playing, with decoded
// frames advancing.
func (p *participant) videoPlays(id, who, kind string) {
	p.t.Helper()
	p.videoPlaysFrom(nil, id, who, kind)
}

// videoPlaysFrom is videoPlays, telling what from sends on failure.
func (p *participant) videoPlaysFrom(from *participant, id, who, kind string) {
	p.t.Helper()
	more := func() string {
		if from == nil {
			return ""
		}
		ctx, cancel := context.WithTimeout(from.ctx, 5*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](sendersJS, chromedp.EvalAwaitPromise))
		d, _ := chromedp.Run(ctx, chromedp.Evaluate[string](tilesJS, chromedp.EvalAwaitPromise))
		return fmt.Sprintf("%s sends: %s %v\n%s's tiles: %s", from.name, s, err, from.name, d)
	}
	v := tileJS(id, kind)
	// Look at it: a tile out of view is paused on purpose.
	p.untilOr(fmt.Sprintf(`(v => v && (v.closest(".tile").scrollIntoView({ block: "nearest" }), true))(%s)`, v), fmt.Sprintf("%s's %s shown", who, kind), more)
	p.untilOr(fmt.Sprintf(`(v => v && !v.paused && v.getVideoPlaybackQuality().totalVideoFrames > 0)(%s)`, v), fmt.Sprintf("%s's %s playing", who, kind), more)
	start := eval[int](p, v+`.getVideoPlaybackQuality().totalVideoFrames`)
	p.untilOr(fmt.Sprintf(`(v => v && v.getVideoPlaybackQuality().totalVideoFrames >= %d)(%s)`, start+5, v), fmt.Sprintf("%s's %s frames advancing", who, kind), more)
}

// audioFlows waits until the microphone p receives from id keeps arriving:
// an <audio> element playing it, inbound bytes growing.
func (p *participant) audioFlows(id, who string) {
	p.t.Helper()
	p.until(fmt.Sprintf(`(async () => { const el = __probe.audio(%q, "mic")[0]; return el && !el.paused && (await __probe.audioIn(%q)).bytes > 0 })()`, id, id),
		fmt.Sprintf("%s's microphone playing", who))
	start := eval[map[string]int](p, fmt.Sprintf(`__probe.audioIn(%q)`, id))
	p.until(fmt.Sprintf(`__probe.audioIn(%q).then((n) => n.bytes > %d && n.packets >= %d)`, id, start["bytes"], start["packets"]+25),
		fmt.Sprintf("%s's microphone bytes growing", who))
}

// enterKey presses Enter (with Shift when shift is true) as a keyboard
// does: one key press carrying its text, which the page may cancel on
// keydown. (chromedp.KeyEvent sends the text as a separate char event,
// which no real keyboard does and no keydown handler can cancel.)
func enterKey(shift bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var mods int64
		if shift {
			mods = int64(chromedp.ModifierShift)
		}
		down := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter", Text: "\r", UnmodifiedText: "\r",
			WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13, Modifiers: mods}
		up := down
		up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
		for _, ev := range []input.DispatchKeyEventParams{down, up} {
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// typeMessage types text in the chat, line by line (Shift+Enter between
// lines), and sends it with Enter.
func (p *participant) typeMessage(text string) {
	p.t.Helper()
	actions := []chromedp.Action[chromedp.Void]{chromedp.Focus(chromedp.CSS("#chat-input"))}
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			actions = append(actions, enterKey(true))
		}
		actions = append(actions, chromedp.KeyEvent(line))
	}
	actions = append(actions, enterKey(false))
	p.run("type a message", actions...)
	p.waitFor(`document.querySelector("#chat-input").value === ""`, "the composer emptied")
}

// chatJS lists the chat as "author: text" lines.
const chatJS = `[...document.querySelectorAll("#chat-log .msg")].map((li) => li.querySelector(".msg-author").textContent + ": " + li.querySelector(".msg-text").textContent)`

// waitChat waits until the chat reads exactly want.
func (p *participant) waitChat(want ...string) {
	p.t.Helper()
	j := jsonText(want)
	p.until(fmt.Sprintf(`JSON.stringify(%s) === %s`, chatJS, jsString(j)), "the chat "+j)
}

// press focuses an element and presses a key, as a keyboard user does.
func (p *participant) press(sel, key string) {
	p.t.Helper()
	p.run("press a key on "+sel, chromedp.Focus(chromedp.CSS(sel)), chromedp.KeyEvent(key))
}

func TestCallThreeConnectDirectly(t *testing.T) {
	srv := startServer(t, "")
	ps, _ := callRoom(t, srv, "Call", "Ann", "Bob", "Cy")
	for _, p := range ps {
		p.waitMembers("Ann", "Bob", "Cy")
		p.until(peersDirect(2), "both others direct, with a round-trip time")
	}
	// Nothing is shared yet; the controls are there, all off.
	for _, p := range ps {
		if got := eval[[]string](p, `[...document.querySelectorAll("#media-controls .toggle[aria-pressed]")].map((b) => b.getAttribute("aria-label") + "=" + b.getAttribute("aria-pressed"))`); strings.Join(got, ",") != "Microphone=false,Camera=false,Share screen=false" {
			t.Errorf("%s: media buttons %v", p.name, got)
		}
		if n := eval[int](p, `document.querySelectorAll("#streams .tile").length`); n != 0 {
			t.Errorf("%s: %d tiles with nothing shared", p.name, n)
		}
	}
}

func TestCallChatThreeWaysAsText(t *testing.T) {
	const (
		bobName = `<img src=x onerror="window.__pwned=1">`
		payload = `<script>window.__pwned=2</script><b>bold</b>`
	)
	srv := startServer(t, "")
	ps, _ := callRoom(t, srv, "Chat", "Ann", bobName, "Cy")
	a, b, c := ps[0], ps[1], ps[2]
	for _, p := range ps {
		p.until(peersDirect(2), "both others direct")
	}

	a.typeMessage("hello from Ann")
	b.waitChat("Ann: hello from Ann")
	c.waitChat("Ann: hello from Ann")
	a.waitChat("You: hello from Ann")

	b.typeMessage(payload + "\nsee https://example.org/x?y=1")
	want := bobName + ": " + payload + "\nsee https://example.org/x?y=1"
	a.waitChat("You: hello from Ann", want)
	c.waitChat("Ann: hello from Ann", want)

	c.typeMessage("and Cy")
	a.waitChat("You: hello from Ann", want, "Cy: and Cy")
	b.waitChat("Ann: hello from Ann", "You: "+payload+"\nsee https://example.org/x?y=1", "Cy: and Cy")
	c.waitChat("Ann: hello from Ann", want, "You: and Cy")

	// Seen marks on one's own messages, with names as text.
	a.until(`document.querySelector("#chat-log .msg[data-own=true] .msg-seen").textContent === "Seen by `+strings.ReplaceAll(bobName, `"`, `\"`)+` and Cy" || document.querySelector("#chat-log .msg[data-own=true] .msg-seen").textContent === "Seen by Cy and `+strings.ReplaceAll(bobName, `"`, `\"`)+`"`, "Ann's message seen by both")

	for _, p := range ps {
		r := eval[map[string]any](p, `(() => {
			const chat = document.querySelector("#chat");
			const a = chat.querySelectorAll(".msg-text a");
			return { made: chat.querySelectorAll("img, script, b").length, links: a.length, href: a[0]?.href ?? "", rel: a[0]?.rel ?? "",
				pre: getComputedStyle(chat.querySelector(".msg-text")).whiteSpace, pwned: "__pwned" in window };
		})()`)
		if r["made"] != float64(0) || r["links"] != float64(1) || r["href"] != "https://example.org/x?y=1" || r["rel"] != "noopener noreferrer" || r["pre"] != "pre-wrap" || r["pwned"] != false {
			t.Errorf("%s: the chat renders %v", p.name, r)
		}
	}

	// The counter, and an over-long message refused (pasted in).
	a.run("focus the composer", chromedp.Focus(chromedp.CSS("#chat-input")))
	ctx, cancel := context.WithTimeout(a.ctx, waitTimeout)
	_, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: strings.Repeat("x", 2001)})
	cancel()
	if err != nil {
		t.Fatalf("paste: %v", err)
	}
	a.waitText("#chat-counter", "2001 / 2000")
	a.run("press Enter", chromedp.Focus(chromedp.CSS("#chat-input")), enterKey(false))
	a.waitText("#chat-error", "1 character too long")
	if n := eval[int](a, `document.querySelectorAll("#chat-log .msg").length`); n != 3 {
		t.Errorf("an over-long message was sent: %d messages", n)
	}
	if eval[string](a, `document.querySelector("#chat-input").getAttribute("aria-invalid")`) != "true" {
		t.Errorf("the over-long message is not marked invalid")
	}
	a.press("#chat-input", "\b")
	a.waitText("#chat-counter", "2000 / 2000")
	a.waitFor(`document.querySelector("#chat-error").textContent === ""`, "the error gone")
}

func TestCallMediaShareStopAndVolume(t *testing.T) {
	srv := startServer(t, "")
	ps, ids := callRoom(t, srv, "Media", "Ann", "Bob", "Cy")
	a, b, c := ps[0], ps[1], ps[2]
	for _, p := range ps {
		p.until(peersDirect(2), "both others direct")
	}

	a.click("#mic-button")
	a.waitFor(`document.querySelector("#mic-button").getAttribute("aria-pressed") === "true"`, "the microphone on")
	a.click("#screen-button")
	a.waitFor(`document.querySelector("#screen-button").getAttribute("aria-pressed") === "true"`, "the screen shared")
	a.waitFor(`!document.querySelector("#sharing-note").hidden`, "the sharing note")
	b.click("#camera-button")
	b.waitFor(`document.querySelector("#streams .tile[data-self=true] video")?.srcObject !== null`, "Bob's own preview")

	for _, p := range []*participant{b, c} {
		p.videoPlays(ids[0], "Ann", "screen")
		p.audioFlows(ids[0], "Ann")
		p.waitText(fmt.Sprintf(`#member-list li[data-member-id=%q] .member-activity`, ids[0]), "sharing microphone, screen")
	}
	for _, p := range []*participant{a, c} {
		p.videoPlays(ids[1], "Bob", "camera")
		p.waitText(fmt.Sprintf(`#member-list li[data-member-id=%q] .member-activity`, ids[1]), "sharing camera")
	}
	// Ann's own screen is not shown back to her; Bob's camera has no sound.
	if n := eval[int](a, `document.querySelectorAll("#streams .tile[data-self=true]").length`); n != 0 {
		t.Errorf("Ann sees %d tiles of her own", n)
	}

	// Bob's camera is sent no larger than it is shown: at full size for
	// Ann (her only tile, large), scaled down for Cy's smaller tile beside
	// Ann's screen, and at full size for Cy too once she pins it.
	scales := `__probe.pcs.filter((pc) => pc.connectionState === "connected").map((pc) => pc.getSenders().find((s) => s.track?.kind === "video")?.getParameters().encodings[0]?.scaleResolutionDownBy ?? 0).sort()`
	oneScaled := `((s) => s.length === 2 && s[0] === 1 && s[1] >= 2)(` + scales + `)`
	b.until(oneScaled, "Bob's camera scaled down for Cy only")

	// Pin, with the mouse and with the keyboard.
	pin := fmt.Sprintf(`#streams .tile[data-member-id=%q][data-kind=camera] .tile-pin`, ids[1])
	c.click(pin)
	c.waitFor(fmt.Sprintf(`document.querySelector("#streams").firstElementChild.dataset.memberId === %q && document.querySelector(%q).getAttribute("aria-pressed") === "true"`, ids[1], pin), "Bob's camera pinned first")
	b.until(`((s) => s.length === 2 && s[0] === 1 && s[1] === 1)(`+scales+`)`, "Bob's camera at full size for Cy, who pinned it")
	c.run("press Enter on the pin", chromedp.Focus(chromedp.CSS(pin)), enterKey(false))
	c.waitFor(fmt.Sprintf(`document.querySelector(%q).getAttribute("aria-pressed") === "false" && document.querySelector("#streams").firstElementChild.dataset.kind === "screen"`, pin), "unpinned by keyboard")
	b.until(oneScaled, "Bob's camera scaled down again for Cy")

	// Full screen, and back.
	full := fmt.Sprintf(`#streams .tile[data-member-id=%q][data-kind=screen] .tile-full`, ids[0])
	c.click(full)
	c.waitFor(fmt.Sprintf(`document.fullscreenElement?.dataset.memberId === %q && document.querySelector(%q).getAttribute("aria-label") === "Leave full screen"`, ids[0], full), "Ann's screen full screen")
	c.click(full)
	c.waitFor(`document.fullscreenElement === null`, "full screen left")

	// Ann stops sharing her screen: gone everywhere; her microphone goes on.
	a.click("#screen-button")
	for _, p := range []*participant{b, c} {
		p.until(tileJS(ids[0], "screen")+` === null`, "Ann's screen gone")
		p.audioFlows(ids[0], "Ann")
	}
	// Shared again, then stopped from the browser's own controls.
	a.click("#screen-button")
	b.videoPlays(ids[0], "Ann", "screen")
	eval[bool](a, `(__probe.displays.at(-1).getVideoTracks()[0].dispatchEvent(new Event("ended")), true)`)
	a.waitText("#media-status", "stopped from the browser")
	a.waitFor(`document.querySelector("#screen-button").getAttribute("aria-pressed") === "false" && document.querySelector("#sharing-note").hidden`, "the screen button off")
	for _, p := range []*participant{b, c} {
		p.until(tileJS(ids[0], "screen")+` === null`, "Ann's screen gone after the browser stopped it")
	}

	// Bob turns Ann down to 0 with the keyboard: silent for Bob only.
	vol := fmt.Sprintf(`#member-list li[data-member-id=%q] .member-volume`, ids[0])
	b.waitFor(fmt.Sprintf(`document.querySelector(%q)?.checkVisibility()`, vol), "Ann's volume slider")
	b.press(vol, "\u0306") // Home
	b.waitText(fmt.Sprintf(`#member-list li[data-member-id=%q] .member-volume-value`, ids[0]), "0 %")
	b.waitFor(fmt.Sprintf(`__probe.audio(%q).length > 0 && __probe.audio(%q).every((el) => el.muted && el.volume === 0)`, ids[0], ids[0]), "Ann silent at Bob")
	if !eval[bool](c, fmt.Sprintf(`__probe.audio(%q).length > 0 && __probe.audio(%q).every((el) => !el.muted && el.volume === 1)`, ids[0], ids[0])) {
		t.Errorf("Ann is silent at Cy too")
	}
	// Back up, then muted with the button.
	b.press(vol, "\u0305") // End: 200 %
	b.waitText(fmt.Sprintf(`#member-list li[data-member-id=%q] .member-volume-value`, ids[0]), "200 %")
	mute := fmt.Sprintf(`#member-list li[data-member-id=%q] .member-mute`, ids[0])
	b.click(mute)
	b.waitFor(fmt.Sprintf(`document.querySelector(%q).getAttribute("aria-pressed") === "true"`, mute), "Ann muted")
	b.waitFor(fmt.Sprintf(`__probe.audio(%q).every((el) => el.muted)`, ids[0]), "Ann's element muted")

	// Microphone and camera off: gone everywhere.
	a.click("#mic-button")
	b.click("#camera-button")
	for _, p := range []*participant{b, c} {
		p.until(fmt.Sprintf(`__probe.audio(%q).length === 0`, ids[0]), "Ann's microphone gone")
	}
	for _, p := range []*participant{a, c} {
		p.until(tileJS(ids[1], "camera")+` === null`, "Bob's camera gone")
	}
	b.waitFor(`document.querySelector("#streams .tile") === null`, "Bob's preview gone")
}

func TestCallLateJoinerGetsHistory(t *testing.T) {
	srv := startServer(t, "")
	ps, _ := callRoom(t, srv, "History", "Ann", "Bob")
	a, b := ps[0], ps[1]
	a.until(peersDirect(1), "Bob direct")
	a.typeMessage("first, from Ann")
	b.waitChat("Ann: first, from Ann")
	b.typeMessage("second, from Bob\nwith two lines")
	a.typeMessage("third")
	a.waitChat("You: first, from Ann", "Bob: second, from Bob\nwith two lines", "You: third")

	c := newCaller(t, srv, "C")
	c.joinByLink(a.invite(false), "Cy")
	c.waitChat("Ann: first, from Ann", "Bob: second, from Bob\nwith two lines", "Ann: third")
	c.typeMessage("hi, I just came")
	a.waitChat("You: first, from Ann", "Bob: second, from Bob\nwith two lines", "You: third", "Cy: hi, I just came")
	b.waitChat("Ann: first, from Ann", "You: second, from Bob\nwith two lines", "Ann: third", "Cy: hi, I just came")
}

func TestCallSurvivesServerRestart(t *testing.T) {
	srv := startServer(t, "")
	ps, ids := callRoom(t, srv, "Restart", "Ann", "Bob")
	a, b := ps[0], ps[1]
	a.until(peersDirect(1), "Bob direct")
	a.click("#mic-button")
	a.click("#camera-button")
	b.videoPlays(ids[0], "Ann", "camera")
	b.audioFlows(ids[0], "Ann")
	b.click("#camera-button")
	a.videoPlays(ids[1], "Bob", "camera")
	a.typeMessage("before")
	b.waitChat("Ann: before")

	srv.stopT(t)
	for _, p := range ps {
		p.waitFor(bannerState+` === "reconnecting"`, "the reconnecting banner")
	}
	// The call goes on without the server.
	b.typeMessage("while the server is away")
	a.waitChat("You: before", "Bob: while the server is away")
	b.videoPlays(ids[0], "Ann", "camera")
	b.audioFlows(ids[0], "Ann")
	a.videoPlays(ids[1], "Bob", "camera")

	started := time.Now()
	srv.startT(t)
	for _, p := range ps {
		p.waitFor(bannerState+` === ""`, "the banner gone")
		p.waitMembers("Ann", "Bob")
	}
	t.Logf("both back %v after the server came back", time.Since(started).Round(10*time.Millisecond))
	if d := time.Since(started); d > 8*time.Second {
		t.Errorf("reconnecting took %v", d)
	}
	for _, p := range ps {
		p.until(peersDirect(1), "the other direct again")
	}
	a.typeMessage("after")
	b.waitChat("Ann: before", "You: while the server is away", "Ann: after")
	b.videoPlays(ids[0], "Ann", "camera")
	b.audioFlows(ids[0], "Ann")
	a.videoPlays(ids[1], "Bob", "camera")
	if n := eval[int](b, `document.querySelectorAll("#streams .tile").length`); n != 2 {
		t.Errorf("Bob shows %d tiles after the restart, want 2 (Ann's camera and his preview)", n)
	}
}

func TestCallScreenshots(t *testing.T) {
	srv := startServer(t, "")
	ps, ids := callRoom(t, srv, "Design review", "Ann", "Bartholomew-Alexander", "Chidi 🌍")
	a, b, c := ps[0], ps[1], ps[2]
	for _, p := range ps {
		p.until(peersDirect(2), "both others direct")
	}
	// The chat first: typing is slow once three browsers encode video.
	a.typeMessage("Here is the new layout: https://example.org/mockups/v3")
	b.typeMessage("Looks calm.\nCan the sidebar be narrower on phones?")
	c.typeMessage("+1, ship it")
	for _, p := range ps {
		p.until(`document.querySelectorAll("#chat-log .msg").length === 3`, "the three messages")
	}
	a.click("#mic-button")
	a.click("#screen-button")
	b.videoPlaysFrom(a, ids[0], "Ann", "screen")
	c.videoPlaysFrom(a, ids[0], "Ann", "screen")
	b.click("#camera-button")
	// The preview's row pushes the buttons down when it appears: a click
	// aimed before that would miss, for a person as for chromedp.
	b.waitFor(`document.querySelector('#streams .tile[data-self="true"]') !== null`, "Bob's preview")
	b.click("#mic-button")
	for _, p := range []*participant{a, c} {
		p.videoPlaysFrom(b, ids[1], "Bartholomew", "camera")
		p.waitText(fmt.Sprintf(`#member-list li[data-member-id=%q] .member-activity`, ids[1]), "sharing microphone, camera")
	}
	c.click("#camera-button")
	a.videoPlaysFrom(c, ids[2], "Chidi", "camera")
	b.videoPlaysFrom(c, ids[2], "Chidi", "camera")

	sizes := []struct{ w, h int64 }{{1280, 800}, {375, 667}}
	for _, s := range []struct {
		p    *participant
		name string
	}{{a, "call-owner"}, {b, "call-guest"}} {
		s.p.controlsNamed(s.name)
		for _, z := range sizes {
			s.p.viewport(z.w, z.h)
			eval[bool](s.p, `(scrollTo(0, 0), true)`)
			time.Sleep(300 * time.Millisecond) // tiles settle at the new size
			s.p.noHorizontalOverflow(fmt.Sprintf("%s at %dx%d", s.name, z.w, z.h))
			s.p.screenshot(fmt.Sprintf("%s-%dx%d", s.name, z.w, z.h))
			s.p.viewShot(fmt.Sprintf("%s-view-%dx%d", s.name, z.w, z.h), "#main")
			if z.w < 900 {
				s.p.viewShot(fmt.Sprintf("%s-view-chat-%dx%d", s.name, z.w, z.h), "#chat")
			}
		}
	}
	b.colorScheme("dark")
	b.screenshot("call-guest-dark-375x667")
	b.viewport(1280, 800)
	b.click("#devices-button")
	b.waitFor(`document.querySelector("#mic-select").options.length > 1`, "the microphones listed")
	eval[bool](b, `(scrollTo(0, 0), true)`)
	b.screenshot("call-guest-devices-dark-1280x800")
}

// clickTogether clicks a button on every page at (nearly) the same moment:
// each click is dispatched from its own goroutine.
func clickTogether(t *testing.T, sel string, ps ...*participant) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
			defer cancel()
			_, errs[i] = chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector(%q).click(), true)`, sel)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: click %s: %v", ps[i].name, sel, err)
		}
	}
}

func TestCallCamerasTurnedOnTogether(t *testing.T) {
	srv := startServer(t, "")
	ps, ids := callRoom(t, srv, "Together", "Ann", "Bob", "Cy")
	for _, p := range ps {
		p.until(peersDirect(2), "both others direct")
	}
	// Every pair turns its cameras on at the same moment (offers cross),
	// then off again, a few times: each time everyone's camera reaches
	// everyone else, and goes away.
	for round := range 3 {
		clickTogether(t, "#camera-button", ps...)
		for i, p := range ps {
			for j, from := range ps {
				if i != j {
					p.videoPlaysFrom(from, ids[j], fmt.Sprintf("%s (round %d)", from.name, round), "camera")
				}
			}
		}
		clickTogether(t, "#camera-button", ps...)
		for i, p := range ps {
			for j := range ps {
				if i != j {
					p.until(tileJS(ids[j], "camera")+` === null`, fmt.Sprintf("camera %d gone (round %d)", j, round))
				}
			}
		}
	}
}

// TestCallSpeakingScreenSoundAndTakeOver checks through the room page what
// the other call tests leave out: who is speaking shows in the member list
// (for the others and for oneself), a screen shared with its sound plays
// that sound at the others, and a second tab of the same browser takes the
// room over ("Use it here" brings it back, and the call with it).
func TestCallSpeakingScreenSoundAndTakeOver(t *testing.T) {
	srv := startServer(t, "")
	ps, ids := callRoom(t, srv, "Talk", "Ann", "Bob")
	a, b := ps[0], ps[1]
	a.until(peersDirect(1), "Bob direct")
	b.until(peersDirect(1), "Ann direct")

	// The fake microphone beeps: Ann is seen speaking, by Bob and by herself.
	a.click("#mic-button")
	annRow := fmt.Sprintf(`#member-list li[data-member-id=%q]`, ids[0])
	speaking := fmt.Sprintf(`document.querySelector(%q)?.classList.contains("speaking") && document.querySelector(%q + " .member-activity").textContent.includes("speaking")`, annRow, annRow)
	b.until(speaking, "Ann speaking, at Bob")
	a.until(speaking, "Ann speaking, at Ann")

	// A screen with its sound (the fake capture has some): Bob plays both.
	a.click("#screen-button")
	b.videoPlays(ids[0], "Ann", "screen")
	if !eval[bool](a, `__probe.displays.at(-1).getAudioTracks().length > 0`) {
		t.Fatal("the fake screen capture came without sound: nothing to test")
	}
	screenSound := fmt.Sprintf(`(async () => { const el = __probe.audio(%q, "screen-audio")[0]; return el && !el.paused && (await __probe.inbound(el.srcObject.getAudioTracks()[0])).packets > 25 })()`, ids[0])
	b.until(screenSound, "Ann's screen sound playing at Bob")

	// Ann opens the room in a second tab: it takes the room over, the
	// first tab says so and offers it back; Bob is connected to the second.
	connected := `__probe.pcs.filter((pc) => pc.connectionState === "connected")`
	eval[bool](b, `(window.__toFirstTab = `+connected+`[0], true)`)
	secondTabs := eval[int](a, `(window.__second = window.open(location.href, "_blank"), window.__second ? 1 : 0)`)
	if secondTabs != 1 {
		t.Fatal("the browser did not open a second tab")
	}
	a.waitFor(`document.querySelector("#use-here") !== null`, "the first tab offering the room back")
	a.waitText("#room", "open in another tab")
	a.waitFor(`window.__second.document.querySelector("#room")?.dataset.conn === "open"`, "the room in the second tab")
	b.until(`((c) => c.length === 1 && c[0] !== window.__toFirstTab)(`+connected+`)`, "Bob connected to the second tab only")
	b.until(peersDirect(1), "Ann direct again, in her second tab")

	// Back in the first tab: the call comes back with it.
	a.click("#use-here")
	a.until(peersDirect(1), "Bob direct from the first tab again")
	a.waitFor(`window.__second.document.querySelector("#use-here") !== null`, "the second tab offering the room back")
	a.click("#mic-button")
	b.audioFlows(ids[0], "Ann")
}
