package e2e

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
)

// These tests check what trust.js promises (docs/protocol.md §11): the
// safety code in the people panel is the same in every browser of a room,
// differs when a server lies about a member's key, a member whose key or
// certificate changed is flagged, and a member flooding another with new
// sessions cannot make it churn or get it cut by the server.

// allowClipboard lets p's page read and write the clipboard, as a focused
// tab may after the person agreed.
func (p *participant) allowClipboard() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		_, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission:       &cdpbrowser.PermissionDescriptor{Name: name},
			Setting:          cdpbrowser.PermissionSettingGranted,
			Origin:           p.srv.URL,
			BrowserContextID: chromedp.FromContext(p.ctx).BrowserContextID,
		})
		if err != nil {
			p.t.Fatalf("%s: allow %s: %v", p.name, name, err)
		}
	}
	if _, err := chromedp.Call(ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
		p.t.Fatalf("%s: emulate focus: %v", p.name, err)
	}
}

// safetyJS reads the safety code and how many members it covers.
const safetyJS = `(() => { const c = document.querySelector("#safety-code"); return c ? [c.textContent, c.dataset.members || "0"] : ["", "0"]; })()`

// safetyCode waits until p's safety code covers members members (self
// included) and returns it.
func (p *participant) safetyCode(members int) string {
	p.t.Helper()
	p.until(fmt.Sprintf(`(%s)[1] === %q && /^\d{4} \d{4} \d{4} \d{4}$/.test((%s)[0])`, safetyJS, fmt.Sprint(members), safetyJS),
		fmt.Sprintf("a safety code covering %d members", members))
	return eval[[]string](p, safetyJS)[0]
}

// sameSafetyCode waits until every participant shows a safety code
// covering n members, which is then final (every connection is up), and
// until they agree; it returns the code.
func sameSafetyCode(t *testing.T, n int, ps ...*participant) string {
	t.Helper()
	code := ps[0].safetyCode(n)
	for _, p := range ps[1:] {
		p.untilOr(fmt.Sprintf(`(([c, n]) => c === %q && n === %q)(%s)`, code, fmt.Sprint(n), safetyJS),
			fmt.Sprintf("the safety code %s of %s", code, ps[0].name),
			func() string { return fmt.Sprintf("%s shows %q", p.name, eval[[]string](p, safetyJS)) })
	}
	return code
}

func TestSafetyCodeSameInThreeBrowsers(t *testing.T) {
	srv := startServer(t, "")
	ps, _ := callRoom(t, srv, "Safety", "Ann", "Bob", "Cat")
	code := sameSafetyCode(t, 3, ps...)
	t.Logf("the safety code of the room: %s", code)

	a := ps[0]
	if got := a.text("#safety-covers"); !strings.Contains(got, "2 people") {
		t.Errorf("the code says it covers %q, want you and 2 people", got)
	}
	a.controlsNamed("the people panel with the safety code")
	if name := eval[string](a, `document.querySelector("#safety").getAttribute("aria-labelledby")`); a.text("#"+name) != "Safety code" {
		t.Errorf("the safety panel is named by %q", name)
	}
	// The copy button is a real button, worked by the keyboard, and copies
	// the code.
	a.allowClipboard()
	a.run("press Enter on the copy button", chromedp.Focus(chromedp.CSS("#safety-copy")), enterKey(false))
	a.waitText("#safety-copy-status", "Safety code copied.")
	if got := eval[string](a, `navigator.clipboard.readText()`); got != code {
		t.Errorf("the clipboard holds %q, want %q", got, code)
	}

	for _, size := range []struct {
		name string
		w, h int64
	}{{"desktop", 1280, 800}, {"phone", 375, 667}} {
		a.viewport(size.w, size.h)
		a.noHorizontalOverflow("the room page (" + size.name + ")")
		a.viewShot("trust-safety-code-"+size.name, "#members")
	}
	a.viewport(1280, 800)

	// When one leaves, the others' code covers two, and still agrees.
	ps[2].leaveForNow()
	if two := sameSafetyCode(t, 2, ps[0], ps[1]); two == code {
		t.Errorf("the code %s did not change when Cat left", two)
	}
}

func TestSafetyCodeDiffersBehindCompromisedServer(t *testing.T) {
	srv := startServer(t, "")
	liar := newEvilServer(t, srv)
	front := &server{URL: liar.URL}
	ps, ids := callRoom(t, front, "Compromised", "Ann", "Bob", "Cat")
	honest := sameSafetyCode(t, 3, ps...)

	// From now on the server hands Cat another key for Bob, as a
	// compromised server would to sit between them; Cat sees it on its
	// next rejoin.
	liar.lie(ids[2], ids[1], fakeKey(t))
	ps[2].reload()
	ps[2].waitRoom()
	ab := sameSafetyCode(t, 3, ps[0], ps[1])
	if ab != honest {
		t.Errorf("Ann and Bob see %s, before %s: nothing changed for them", ab, honest)
	}
	if c := ps[2].safetyCode(3); c == ab {
		t.Fatalf("Cat, told another key for Bob, shows the same code %s as Ann and Bob", c)
	}
	// And Cat, who saw Bob's real key before, is told it changed.
	ps[2].until(fmt.Sprintf(`document.querySelector('#member-list li[data-member-id=%q] .member-warning')?.textContent.includes("Bob’s identity key changed")`, ids[1]),
		"Cat's warning about Bob's key")
}

func TestSafetyCodeDiffersBehindDTLSManInTheMiddle(t *testing.T) {
	srv := startServer(t, "")
	evil := newEvilServer(t, srv)
	evil.interceptAll()
	front := &server{URL: evil.URL}
	ps, ids := callRoom(t, front, "Intercepted", "Ann", "Bob")
	a, b := ps[0], ps[1]
	// Each connects to a pion peer posing as the other, which terminates
	// DTLS with its own certificate on both sides.
	for i, p := range ps {
		other := ids[1-i]
		p.until(fmt.Sprintf(`document.querySelector('#member-list li[data-member-id=%q] .peer-state').dataset.peerState === "direct"`, other),
			"a connection to whoever poses as the other")
	}
	if got := evil.connected(); len(got) != 2 {
		t.Fatalf("the pion peers in the middle connected for %q, want both members", got)
	}
	codeA, codeB := a.safetyCode(2), b.safetyCode(2)
	if codeA == codeB {
		t.Fatalf("Ann and Bob show the same code %s with someone in the middle", codeA)
	}
	t.Logf("with a man in the middle, Ann reads %s and Bob %s", codeA, codeB)
}

func TestTrustChangedKeyFlaggedOnOthersPages(t *testing.T) {
	srv := startServer(t, "")
	ps, ids := callRoom(t, srv, "Changed", "Ann", "Bob")
	a, b := ps[0], ps[1]
	sameSafetyCode(t, 2, a, b)
	warning := fmt.Sprintf(`#member-list li[data-member-id=%q] .member-warning`, ids[1])
	if eval[bool](a, fmt.Sprintf(`document.querySelector(%q) !== null`, warning)) {
		t.Fatalf("Ann warns about Bob before anything changed")
	}

	// Bob's browser loses its key and certificate (its site data cleared,
	// or another device with the same secret) and comes back.
	eval[bool](b, `(indexedDB.deleteDatabase("lepeerchat.trust"), true)`)
	b.reload()
	b.waitRoom()
	a.until(fmt.Sprintf(`document.querySelector(%q)?.textContent.includes("Bob’s")`, warning), "Ann's warning about Bob")
	a.until(fmt.Sprintf(`document.querySelector(%q).textContent.includes("identity key and connection certificate changed since this browser last saw them")`, warning),
		"the warning to name both the key (rebound by Bob's rejoin) and the certificate")
	if eval[string](a, fmt.Sprintf(`document.querySelector(%q).getAttribute("role")`, warning)) != "alert" {
		t.Errorf("the warning is not announced")
	}
	sameSafetyCode(t, 2, a, b)
	a.viewShot("trust-changed-key-desktop", "#members")
	if eval[bool](b, `document.querySelector(".member-warning") !== null`) {
		t.Errorf("Bob, who forgot what he saw, warns about Ann")
	}

	// Acknowledged, it goes, and stays gone on the next visit (once what
	// is seen now is kept).
	seenBefore := eval[string](a, seenJS(ids[1]))
	a.click(warning + " button")
	a.waitFor(fmt.Sprintf(`document.querySelector(%q) === null`, warning), "the warning gone once acknowledged")
	a.until(fmt.Sprintf(`(await %s) !== %q`, seenJS(ids[1]), seenBefore), "what is seen of Bob now kept")
	a.reload()
	a.waitRoom()
	a.safetyCode(2)
	if eval[bool](a, fmt.Sprintf(`document.querySelector(%q) !== null`, warning)) {
		t.Errorf("the acknowledged warning came back")
	}
}

// trustDBJS runs use(db, done) on the page's trust database (trust.js,
// IndexedDB) and resolves with what it passes to done; with none when the
// page has not made the database yet (it makes nothing itself).
func trustDBJS(none, use string) string {
	return fmt.Sprintf(`new Promise((resolve, reject) => {
		const open = indexedDB.open("lepeerchat.trust");
		open.onupgradeneeded = () => open.transaction.abort();
		open.onerror = () => resolve(%s);
		open.onsuccess = () => {
			const db = open.result;
			const done = (v) => { db.close(); resolve(v); };
			try { (%s)(db, done); } catch (err) { db.close(); reject(err); }
		};
	})`, none, use)
}

// seenJS reads, as JSON, what the page keeps of what it saw of a member
// of its room.
func seenJS(member string) string {
	return trustDBJS(`"null"`, fmt.Sprintf(`(db, done) => {
		const get = db.transaction("seen").objectStore("seen").get([document.querySelector("#room").dataset.roomId, %q]);
		get.onsuccess = () => done(JSON.stringify(get.result ?? null));
	}`, member))
}

// trustEntriesJS counts what the page keeps for a room: identity keys,
// certificates and what was seen, together.
func trustEntriesJS(room string) string {
	return trustDBJS("0", fmt.Sprintf(`(db, done) => {
		const stores = ["identity", "certificate", "seen"];
		const tx = db.transaction(stores);
		const range = IDBKeyRange.bound([%[1]q], [%[1]q, []]);
		let n = 0, left = stores.length;
		for (const s of stores) {
			const c = tx.objectStore(s).count(range);
			c.onsuccess = () => { n += c.result; if (--left === 0) done(n); };
		}
	}`, room))
}

func TestTrustForgettingARoomForgetsItsKeys(t *testing.T) {
	srv := startServer(t, "")
	a := newCaller(t, srv, "A")
	kept := a.createRoom("Kept", "Ann")
	a.until(fmt.Sprintf(`(await %s) >= 2`, trustEntriesJS(kept)), "the key and certificate of the first room kept")
	gone := a.createRoom("Forgotten", "Ann")
	a.until(fmt.Sprintf(`(await %s) >= 2`, trustEntriesJS(gone)), "the key and certificate of the second room kept")

	a.click(".brand")
	// The list is drawn again once the server says the rooms are alive:
	// click after that, or the button may go from under the click.
	a.waitFor(`[...document.querySelectorAll("#room-list li")].filter((li) => li.dataset.alive === "true").length === 2`, "both rooms listed and checked alive")
	a.click(fmt.Sprintf(`#room-list li:has(a[href$=%q]) button`, gone))
	a.click("dialog button.danger")
	a.waitFor(`document.querySelectorAll("#room-list li").length === 1`, "the forgotten room gone from the list")
	a.until(fmt.Sprintf(`(await %s) === 0`, trustEntriesJS(gone)), "the forgotten room's key and certificate deleted")
	if n := eval[int](a, trustEntriesJS(kept)); n < 2 {
		t.Errorf("the other room keeps %d entries, want its key and certificate", n)
	}
}

// churnProbeJS records, from the first line of every page, the
// WebSockets that closed and the peer connections made.
const churnProbeJS = `(() => {
	if (window.__churn) return;
	const churn = window.__churn = { closes: [], pcs: 0 };
	const NativeWS = window.WebSocket;
	window.WebSocket = class extends NativeWS {
		constructor(...args) { super(...args); this.addEventListener("close", (e) => churn.closes.push(e.code)); }
	};
	const NativePC = window.RTCPeerConnection;
	window.RTCPeerConnection = class extends NativePC {
		constructor(...args) { super(...args); churn.pcs++; }
	};
})()`

func TestChurnFromAMemberNeitherCutsNorStallsTheVictim(t *testing.T) {
	srv := startServer(t, "")
	a := newParticipant(t, srv, "A")
	ctx, cancel := context.WithTimeout(a.ctx, waitTimeout)
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: churnProbeJS})
	cancel()
	if err != nil {
		t.Fatalf("install the probe: %v", err)
	}
	room := a.createRoom("Churn", "Ann")
	annID := eval[string](a, `document.querySelector("#member-list li[data-self=true]").dataset.memberId`)
	b := newCaller(t, srv, "B")
	b.joinByLink(a.invite(false), "Bob")
	bobID := eval[string](b, `document.querySelector("#member-list li[data-self=true]").dataset.memberId`)
	a.until(fmt.Sprintf(`document.querySelector('#member-list li[data-member-id=%q] .peer-state').dataset.peerState === "direct"`, bobID), "Ann and Bob connected")

	link, err := url.Parse(a.invite(false))
	if err != nil {
		t.Fatal(err)
	}
	token, _ := url.QueryUnescape(strings.TrimPrefix(link.Fragment, "invite="))
	flood, cancelFlood := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancelFlood()
	m := joinAsMember(flood, t, srv, room, token, "Mallory")
	a.waitMembers("Ann", "Bob", "Mallory")
	before := eval[int](a, `__churn.pcs`)

	// 40 signals a second for three seconds, each an offer with a new
	// session id: whichever role Ann has, each asks her for a new
	// connection and an answer.
	offer := pionOffer(t)
	const signals = 120
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for i := range signals {
		<-tick.C
		m.send("signal", map[string]any{"to": annID, "data": map[string]any{"sid": fmt.Sprintf("churn-%d", i), "description": offer}})
	}
	// Once the server answers Mallory's ping it has relayed the flood;
	// once it answers Ann's request after that, Ann's page has handled it.
	m.roundTrip("ping")
	a.invite(false)

	made := eval[int](a, `__churn.pcs`) - before
	t.Logf("%d signals with new sessions made Ann's page build %d peer connections", signals, made)
	if made > 6 {
		t.Errorf("Ann's page built %d peer connections for %d new sessions: the limit did not hold", made, signals)
	}
	if closes := eval[[]int](a, `__churn.closes`); len(closes) > 0 {
		t.Errorf("Ann's WebSocket closed during the flood: codes %v", closes)
	}
	if st := eval[string](a, `document.querySelector("#room").dataset.conn`); st != "open" {
		t.Errorf("Ann's connection is %q", st)
	}
	a.until(fmt.Sprintf(`document.querySelector('#member-list li[data-member-id=%q] .peer-state').dataset.peerState === "direct"`, bobID), "Ann and Bob still connected")
	b.waitMembers("Ann", "Bob", "Mallory")
}

// pionOffer is a real offer (a data channel), as a peer reloading its page
// would send.
func pionOffer(t *testing.T) webrtc.SessionDescription {
	t.Helper()
	pc, err := interopAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.CreateDataChannel("lepeerchat", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer
}

// member is a room member speaking the protocol over a WebSocket, with no
// browser and no peer connection: enough to send what a hostile member
// sends.
type member struct {
	t      *testing.T
	ctx    context.Context
	conn   *websocket.Conn
	id     string
	nextID int
	// replies gets the server's answers (messages with "re"); pushes are
	// dropped.
	replies chan map[string]json.RawMessage
}

// joinAsMember joins a room with an invitation, as name.
func joinAsMember(ctx context.Context, t *testing.T, srv *server, room, token, name string) *member {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws",
		&websocket.DialOptions{Subprotocols: []string{"lepeerchat.v1"}})
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	m := &member{t: t, ctx: ctx, conn: conn, replies: make(chan map[string]json.RawMessage, 512)}
	go func() {
		defer close(m.replies)
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var msg map[string]json.RawMessage
			if json.Unmarshal(data, &msg) == nil && msg["re"] != nil {
				select {
				case m.replies <- msg:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	joined := m.roundTrip("join", "room", room, "invite", token, "name", name)
	var self struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(joined["self"], &self); err != nil || self.ID == "" {
		t.Fatalf("%s: joined without a self: %v", name, err)
	}
	m.id = self.ID
	return m
}

// send sends a client message without waiting for its answer.
func (m *member) send(typ string, fields map[string]any) int {
	m.t.Helper()
	m.nextID++
	msg := map[string]any{"id": m.nextID, "type": typ}
	for k, v := range fields {
		msg[k] = v
	}
	data, _ := json.Marshal(msg)
	if err := m.conn.Write(m.ctx, websocket.MessageText, data); err != nil {
		m.t.Fatalf("write %s: %v", typ, err)
	}
	return m.nextID
}

// roundTrip sends a message (fields as name, value pairs) and returns its
// answer, failing the test on a refusal. Answers to earlier messages
// (refused signals) are skipped.
func (m *member) roundTrip(typ string, fields ...string) map[string]json.RawMessage {
	m.t.Helper()
	f := map[string]any{}
	for i := 0; i+1 < len(fields); i += 2 {
		f[fields[i]] = fields[i+1]
	}
	id := m.send(typ, f)
	for {
		select {
		case msg, ok := <-m.replies:
			if !ok {
				m.t.Fatalf("%s: the connection closed", typ)
			}
			var re int
			json.Unmarshal(msg["re"], &re)
			if re != id {
				continue
			}
			var kind string
			json.Unmarshal(msg["type"], &kind)
			if kind == "error" {
				m.t.Fatalf("%s refused: %s", typ, msg["error"])
			}
			return msg
		case <-m.ctx.Done():
			m.t.Fatalf("%s: no answer: %v", typ, m.ctx.Err())
		}
	}
}

// replaceKey sets the key of every member object of id within v.
func replaceKey(v any, id, key string) bool {
	changed := false
	switch x := v.(type) {
	case map[string]any:
		if x["id"] == id && x["name"] != nil {
			x["key"] = key
			changed = true
		}
		for _, c := range x {
			changed = replaceKey(c, id, key) || changed
		}
	case []any:
		for _, c := range x {
			changed = replaceKey(c, id, key) || changed
		}
	}
	return changed
}

// fakeKey is a valid identity key (a P-256 point) nobody in the room holds.
func fakeKey(t *testing.T) string {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes())
}
