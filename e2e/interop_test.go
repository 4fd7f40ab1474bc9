package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// TestInteropPionAndChromium checks the browser client against a second,
// independent WebRTC implementation: a pion peer (Go) joins a room with a
// Chromium participant through the real server, speaking the client's
// signal format (docs in web/static/js/mesh.js), and the two exchange chat
// messages over the negotiated data channel and Opus audio, both ways.
// Whichever side the member ids make polite, the negotiation completes.
func TestInteropPionAndChromium(t *testing.T) {
	srv := startServer(t, "")
	a := meshRoom(t, srv, true, "A")[0]
	room := eval[string](a.participant, `T.room`)
	token := eval[string](a.participant, `T.invite()`)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	p := newInteropPeer(ctx, t, srv, room, token, a.id)
	go p.run()
	t.Logf("pion is %s, polite: %v", p.self, p.polite)
	pion := &meshMember{participant: &participant{t: t, name: "pion"}, id: p.self}

	a.waitConnected("direct", pion)
	select {
	case <-p.connected:
	case <-ctx.Done():
		t.Fatalf("pion never connected: %s", p.pc.ConnectionState())
	}

	// Chat, both ways; the browser acknowledges pion's message. A connected
	// peer connection may not have opened its data channel yet, and what the
	// browser says before then reaches pion in the history instead: wait for
	// the channel, so that the message goes out as itself.
	a.until(fmt.Sprintf(`T.mesh.openPeers.includes(%q)`, p.self), "the browser's data channel to pion open")
	eval[string](a.participant, `T.chat.send("hello pion").id`)
	p.waitFor(ctx, "the browser's chat message", func() bool { return p.chatFromBrowser.Load() != nil })
	if got := *p.chatFromBrowser.Load(); got != "hello pion" {
		t.Errorf("pion got %q", got)
	}
	p.sendChat(p.key.live(t, room, p.self, chatMessage{ID: "pion-msg-1", Lamport: 1, Text: "hello from pion <b>"}))
	a.until(`T.chatLines().includes("hello from pion <b>")`, "pion's message in the browser")
	p.waitFor(ctx, "the browser's seen mark", func() bool { return p.seen.Load() })

	// Opus, pion → browser: its track is labelled "mic".
	a.until(fmt.Sprintf(`T.kinds(%q) === "mic"`, p.self), "pion's microphone in the browser")
	a.audioFlows(pion, "mic")

	// Opus, browser → pion.
	eval[bool](a.participant, `T.media.startMicrophone().then(() => true)`)
	p.waitFor(ctx, "RTP packets from the browser's microphone", func() bool { return p.packets.Load() > 50 })
	if mime := p.remoteCodec.Load(); mime == nil || !strings.EqualFold(*mime, webrtc.MimeTypeOpus) {
		t.Errorf("the browser sent %v, want Opus", mime)
	}
	if err := p.failure(); err != nil {
		t.Fatal(err)
	}
	a.noErrors()
}

// interopAPI is a pion API that keeps ICE on 127.0.0.1, as the browser
// does with --allow-loopback-in-peer-connection.
func interopAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// interopPeer is a pion member of a room. Its signalling runs in one
// goroutine (run); the test reads what it observed through atomics.
type interopPeer struct {
	t      *testing.T
	ctx    context.Context
	conn   *websocket.Conn
	self   string // member id
	remote string // the browser's member id
	room   string
	key    *chatKey // its identity key, announced on join and on the data channel
	polite bool
	sid    string
	nextID uint64

	pc    *webrtc.PeerConnection
	dc    *webrtc.DataChannel
	track *webrtc.TrackLocalStaticSample
	early []webrtc.ICECandidateInit

	local     chan *webrtc.ICECandidate
	inbound   chan map[string]json.RawMessage
	connected chan struct{}
	errMu     sync.Mutex
	err       error

	chatFromBrowser atomic.Pointer[string]
	seen            atomic.Bool
	seenMessages    atomic.Int64 // chat.seen messages received
	seenIDs         atomic.Int64 // message ids acknowledged in them
	received        atomic.Int64 // data-channel messages received
	opened          atomic.Bool  // the data channel opened
	packets         atomic.Int64
	remoteCodec     atomic.Pointer[string]
}

// newInteropPeer joins the room with an invitation and prepares a peer
// connection with a negotiated data channel (id 0) and an Opus track.
func newInteropPeer(ctx context.Context, t *testing.T, srv *server, room, token, remote string) *interopPeer {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws",
		&websocket.DialOptions{Subprotocols: []string{"lepeerchat.v1"}})
	if err != nil {
		t.Fatalf("pion: dial: %v", err)
	}
	t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	p := &interopPeer{t: t, ctx: ctx, conn: conn, remote: remote, room: room, key: newChatKey(t), sid: "pion-session",
		local: make(chan *webrtc.ICECandidate, 64), inbound: make(chan map[string]json.RawMessage, 256), connected: make(chan struct{})}

	// The welcome, then the join with its identity key (contract A) and
	// its reply. A server that does not know the field yet refuses it
	// and changes nothing: then pion joins without it.
	p.read() // welcome
	join := map[string]any{"room": room, "invite": token, "name": "pion", "key": p.key.public(t)}
	p.write("join", join)
	for {
		m := p.read()
		var typ string
		json.Unmarshal(m["type"], &typ)
		if typ == "error" && join["key"] != nil && strings.Contains(string(m["error"]), "unknown field") {
			delete(join, "key")
			p.write("join", join)
			continue
		}
		if typ == "error" {
			t.Fatalf("pion: join refused: %s", m["error"])
		}
		if typ == "joined" {
			var self struct {
				ID string `json:"id"`
			}
			json.Unmarshal(m["self"], &self)
			p.self = self.ID
			break
		}
	}
	p.polite = p.self < remote

	pc, err := interopAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("pion: new peer connection: %v", err)
	}
	p.pc = pc
	t.Cleanup(func() { pc.Close() })
	negotiated, id := true, uint16(0)
	if p.dc, err = pc.CreateDataChannel("lepeerchat", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}); err != nil {
		t.Fatalf("pion: data channel: %v", err)
	}
	p.dc.OnOpen(func() {
		// As the test drivers do (testKeysJS): its key, first thing.
		if err := p.dc.SendText(mustJSON(t, map[string]string{"type": "test.key", "key": p.key.public(t)})); err != nil {
			p.fail(fmt.Errorf("pion: send its key: %w", err))
		}
		p.opened.Store(true)
	})
	p.dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		p.received.Add(1)
		var m struct {
			Type string   `json:"type"`
			Text string   `json:"text"`
			IDs  []string `json:"ids"`
		}
		if json.Unmarshal(msg.Data, &m) != nil {
			p.fail(fmt.Errorf("pion: the browser sent invalid JSON: %q", msg.Data))
			return
		}
		switch m.Type {
		case "chat.msg":
			p.chatFromBrowser.Store(&m.Text)
		case "chat.seen":
			p.seenMessages.Add(1)
			p.seenIDs.Add(int64(len(m.IDs)))
			if len(m.IDs) == 1 && m.IDs[0] == "pion-msg-1" {
				p.seen.Store(true)
			}
		}
	})
	if p.track, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pion"); err != nil {
		t.Fatalf("pion: track: %v", err)
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			p.local <- c
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			select {
			case <-p.connected:
			default:
				close(p.connected)
			}
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		mime := tr.Codec().MimeType
		p.remoteCodec.Store(&mime)
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			p.packets.Add(1)
		}
	})
	go func() {
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				close(p.inbound)
				return
			}
			var m map[string]json.RawMessage
			if json.Unmarshal(data, &m) == nil {
				p.inbound <- m
			}
		}
	}()
	return p
}

func (p *interopPeer) fail(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *interopPeer) failure() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// read reads one server message (before run starts).
func (p *interopPeer) read() map[string]json.RawMessage {
	p.t.Helper()
	_, data, err := p.conn.Read(p.ctx)
	if err != nil {
		p.t.Fatalf("pion: read: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		p.t.Fatalf("pion: server sent %q: %v", data, err)
	}
	return m
}

// write sends a client message; only run's goroutine calls it once run
// has started.
func (p *interopPeer) write(typ string, fields map[string]any) {
	p.nextID++
	m := map[string]any{"id": p.nextID, "type": typ}
	for k, v := range fields {
		m[k] = v
	}
	data, _ := json.Marshal(m)
	if err := p.conn.Write(p.ctx, websocket.MessageText, data); err != nil {
		p.fail(fmt.Errorf("pion: write %s: %w", typ, err))
	}
}

// signal sends signal data to the browser, with pion's session id.
func (p *interopPeer) signal(data map[string]any) {
	data["sid"] = p.sid
	p.write("signal", map[string]any{"to": p.remote, "data": data})
}

// labels names what pion sends: its track, as the microphone.
func (p *interopPeer) labels() map[string]string {
	out := map[string]string{}
	for _, tr := range p.pc.GetTransceivers() {
		if s := tr.Sender(); s != nil && s.Track() == p.track && tr.Mid() != "" {
			out[tr.Mid()] = "mic"
		}
	}
	return out
}

// run drives pion's signalling and sends Opus until the context ends.
func (p *interopPeer) run() {
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		silence := []byte{0xf8, 0xff, 0xfe} // one 20 ms Opus silence frame
		for {
			select {
			case <-p.ctx.Done():
				return
			case <-tick.C:
				p.track.WriteSample(media.Sample{Data: silence, Duration: 20 * time.Millisecond})
			}
		}
	}()
	if !p.polite {
		// The impolite side makes the first offer.
		if _, err := p.pc.AddTrack(p.track); err != nil {
			p.fail(err)
			return
		}
		offer, err := p.pc.CreateOffer(nil)
		if err == nil {
			err = p.pc.SetLocalDescription(offer)
		}
		if err != nil {
			p.fail(fmt.Errorf("pion: offer: %w", err))
			return
		}
		p.signal(map[string]any{"description": offer, "media": p.labels()})
	}
	for {
		select {
		case <-p.ctx.Done():
			return
		case c := <-p.local:
			p.signal(map[string]any{"candidate": c.ToJSON()})
		case m, ok := <-p.inbound:
			if !ok {
				return
			}
			p.serverMessage(m)
		}
	}
}

func (p *interopPeer) serverMessage(m map[string]json.RawMessage) {
	var typ string
	json.Unmarshal(m["type"], &typ)
	switch typ {
	case "error":
		p.fail(fmt.Errorf("pion: server refused a message: %s", m["error"]))
		return
	case "signal":
		var from string
		json.Unmarshal(m["from"], &from)
		if from != p.remote {
			return // pion talks to one member only
		}
	default:
		return // replies and presence
	}
	var data struct {
		Description *webrtc.SessionDescription `json:"description"`
		Candidate   *webrtc.ICECandidateInit   `json:"candidate"`
	}
	if err := json.Unmarshal(m["data"], &data); err != nil {
		p.fail(fmt.Errorf("pion: signal data %s: %w", m["data"], err))
		return
	}
	switch {
	case data.Description != nil:
		if err := p.pc.SetRemoteDescription(*data.Description); err != nil {
			p.fail(fmt.Errorf("pion: set remote %s: %w", data.Description.Type, err))
			return
		}
		for _, c := range p.early {
			if err := p.pc.AddICECandidate(c); err != nil {
				p.fail(fmt.Errorf("pion: early candidate: %w", err))
			}
		}
		p.early = nil
		if data.Description.Type != webrtc.SDPTypeOffer {
			return
		}
		if len(p.labels()) == 0 {
			// Send on the browser's microphone slot (a free audio transceiver).
			if _, err := p.pc.AddTrack(p.track); err != nil {
				p.fail(fmt.Errorf("pion: add track: %w", err))
				return
			}
		}
		answer, err := p.pc.CreateAnswer(nil)
		if err == nil {
			err = p.pc.SetLocalDescription(answer)
		}
		if err != nil {
			p.fail(fmt.Errorf("pion: answer: %w", err))
			return
		}
		p.signal(map[string]any{"description": answer, "media": p.labels()})
	case data.Candidate != nil:
		if p.pc.RemoteDescription() == nil {
			p.early = append(p.early, *data.Candidate)
			return
		}
		if err := p.pc.AddICECandidate(*data.Candidate); err != nil {
			p.fail(fmt.Errorf("pion: candidate: %w", err))
		}
	}
	// Hellos need nothing: an impolite pion has offered already.
}

// sendChat sends a raw data channel message.
func (p *interopPeer) sendChat(msg string) {
	p.t.Helper()
	if err := p.dc.SendText(msg); err != nil {
		p.t.Fatalf("pion: send on the data channel: %v", err)
	}
}

// waitFor polls cond (pion state, read through atomics) until the context
// ends.
func (p *interopPeer) waitFor(ctx context.Context, what string, cond func() bool) {
	p.t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			p.t.Fatalf("pion: no %s (%v)", what, p.failure())
		case <-tick.C:
		}
	}
}
