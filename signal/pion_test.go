package signal

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// signalData is the "data" of a signal message as the web client sends it:
// either a session description or one trickled ICE candidate.
type signalData struct {
	Description *webrtc.SessionDescription `json:"description,omitempty"`
	Candidate   *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
}

// loopbackAPI is a pion API that keeps ICE on 127.0.0.1: UDP over IPv4
// only, loopback candidates included, no other interface, no mDNS names.
func loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// pionPeer is one WebRTC endpoint that signals only through its protocol
// client. All its signalling state is touched by the test goroutine alone;
// pion's callbacks only post to channels.
type pionPeer struct {
	t    *testing.T
	name string
	c    *client
	pc   *webrtc.PeerConnection
	// remote is the member id of the other peer, once known.
	remote string

	// local receives pion's gathered candidates; nil marks the end.
	local chan *webrtc.ICECandidate
	// received gets the data channel messages this peer receives.
	received chan string
	// errs gets failures from pion's callbacks.
	errs chan error

	// early holds remote candidates that arrived before the remote
	// description; queued counts them over the peer's life.
	early  []webrtc.ICECandidateInit
	queued int
	// heldOffer, when set, is an offer waiting for the first local
	// candidate to be sent ahead of it (see TestTwoPionPeers…).
	heldOffer *webrtc.SessionDescription
	// pending lists the ids of signal messages not yet answered.
	pending map[uint64]string
}

func newPionPeer(t *testing.T, name string, c *client) *pionPeer {
	t.Helper()
	pc, err := loopbackAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("%s: new peer connection: %v", name, err)
	}
	p := &pionPeer{
		t: t, name: name, c: c, pc: pc,
		local:    make(chan *webrtc.ICECandidate, 64),
		received: make(chan string, 4),
		errs:     make(chan error, 8),
		pending:  make(map[uint64]string),
	}
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Errorf("%s: close peer connection: %v", name, err)
		}
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		select {
		case p.local <- c:
		default:
			p.fail(fmt.Errorf("%s: too many local candidates", name))
		}
	})
	return p
}

func (p *pionPeer) fail(err error) {
	select {
	case p.errs <- err:
	default:
	}
}

// attachChannel makes dc say hello once open and report what it receives.
func (p *pionPeer) attachChannel(dc *webrtc.DataChannel) {
	dc.OnOpen(func() {
		if err := dc.SendText("hello from " + p.name); err != nil {
			p.fail(fmt.Errorf("%s: send on data channel: %w", p.name, err))
		}
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case p.received <- string(m.Data):
		default:
		}
	})
}

// send relays data to the remote peer through the server.
func (p *pionPeer) send(data signalData) {
	p.t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		p.t.Fatalf("%s: marshal signal: %v", p.name, err)
	}
	p.c.mu.Lock()
	p.c.nextID++
	id := p.c.nextID
	p.c.mu.Unlock()
	frame, err := json.Marshal(map[string]any{"id": id, "type": "signal", "to": p.remote, "data": json.RawMessage(raw)})
	if err != nil {
		p.t.Fatalf("%s: marshal message: %v", p.name, err)
	}
	what := "candidate"
	if data.Description != nil {
		what = data.Description.Type.String()
	}
	p.pending[id] = what
	p.c.sendRaw(string(frame))
}

// offer starts the negotiation. With candidateFirst, the offer is held back
// until the first local candidate has been sent, so that the remote peer
// certainly receives a candidate before any description.
func (p *pionPeer) offer(candidateFirst bool) {
	p.t.Helper()
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.t.Fatalf("%s: create offer: %v", p.name, err)
	}
	// Gathering starts here; the offer itself carries no candidate, so ICE
	// depends on the trickled ones only.
	if err := p.pc.SetLocalDescription(offer); err != nil {
		p.t.Fatalf("%s: set local offer: %v", p.name, err)
	}
	if candidateFirst {
		p.heldOffer = &offer
		return
	}
	p.send(signalData{Description: &offer})
}

// localCandidate trickles one of our candidates (nil: gathering is over).
func (p *pionPeer) localCandidate(c *webrtc.ICECandidate) {
	p.t.Helper()
	if c != nil {
		init := c.ToJSON()
		p.send(signalData{Candidate: &init})
	}
	if p.heldOffer != nil {
		offer := p.heldOffer
		p.heldOffer = nil
		p.send(signalData{Description: offer})
	}
}

// serverMessage handles one message from the server.
func (p *pionPeer) serverMessage(m msg) {
	p.t.Helper()
	if re, ok := m["re"].(float64); ok {
		what, ok := p.pending[uint64(re)]
		if !ok {
			p.t.Fatalf("%s: reply to unknown message: %v", p.name, m)
		}
		if m.str("type") != "ok" {
			p.t.Fatalf("%s: signal (%s) refused: %v", p.name, what, m)
		}
		delete(p.pending, uint64(re))
		return
	}
	if m.str("type") != "signal" {
		return // presence events
	}
	if p.remote == "" {
		p.remote = m.str("from")
	}
	if from := m.str("from"); from != p.remote {
		p.t.Fatalf("%s: signal from %q, want %q", p.name, from, p.remote)
	}
	raw, err := json.Marshal(m["data"])
	if err != nil {
		p.t.Fatalf("%s: re-encode signal data: %v", p.name, err)
	}
	var data signalData
	if err := json.Unmarshal(raw, &data); err != nil {
		p.t.Fatalf("%s: signal data %s: %v", p.name, raw, err)
	}
	switch {
	case data.Description != nil:
		p.remoteDescription(*data.Description)
	case data.Candidate != nil:
		p.remoteCandidate(*data.Candidate)
	default:
		p.t.Fatalf("%s: signal data with neither description nor candidate: %s", p.name, raw)
	}
}

func (p *pionPeer) remoteDescription(d webrtc.SessionDescription) {
	p.t.Helper()
	if err := p.pc.SetRemoteDescription(d); err != nil {
		p.t.Fatalf("%s: set remote %s: %v", p.name, d.Type, err)
	}
	// Now that a remote description exists, the candidates that came
	// early can be applied, in the order they came.
	for _, c := range p.early {
		if err := p.pc.AddICECandidate(c); err != nil {
			p.t.Fatalf("%s: add queued candidate %q: %v", p.name, c.Candidate, err)
		}
	}
	p.early = nil
	if d.Type != webrtc.SDPTypeOffer {
		return
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.t.Fatalf("%s: create answer: %v", p.name, err)
	}
	if err := p.pc.SetLocalDescription(answer); err != nil {
		p.t.Fatalf("%s: set local answer: %v", p.name, err)
	}
	p.send(signalData{Description: &answer})
}

func (p *pionPeer) remoteCandidate(c webrtc.ICECandidateInit) {
	p.t.Helper()
	if p.pc.RemoteDescription() == nil {
		p.early = append(p.early, c)
		p.queued++
		return
	}
	if err := p.pc.AddICECandidate(c); err != nil {
		p.t.Fatalf("%s: add candidate %q: %v", p.name, c.Candidate, err)
	}
}

// takeQueued hands over the messages the harness client read and kept
// while the test awaited something else.
func takeQueued(c *client) []msg {
	q := c.queue
	c.queue = nil
	return q
}

// TestTwoPionPeersConnectThroughTheServer checks that the signalling the
// server relays is enough for a real WebRTC handshake: two pion peers,
// each behind its own protocol client, exchange an offer, an answer and
// trickled candidates as signal messages, then talk over a data channel.
// The offerer sends its first candidate ahead of its offer, so that the
// answerer must hold candidates that come before the remote description,
// as the web client must.
func TestTwoPionPeersConnectThroughTheServer(t *testing.T) {
	start := time.Now()
	ts := startServer(t, "")
	ca, cb := dial(t, ts), dial(t, ts)
	owner := createRoom(ca, "Pion", "alice")
	guest := joinRoom(cb, owner.room, invite(ca, map[string]any{}), "bob")
	// The owner learns the guest's id as the web client does: from the
	// room's presence event.
	if ev := ca.event("member.joined"); ev.obj("member").str("id") != guest.id {
		t.Fatalf("member.joined names %v, want %s", ev.obj("member"), guest.id)
	}

	a, b := newPionPeer(t, "A", ca), newPionPeer(t, "B", cb)
	a.remote = guest.id // B learns A's id from the first signal it gets.

	dc, err := a.pc.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatalf("create data channel: %v", err)
	}
	a.attachChannel(dc)
	b.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != "chat" {
			b.fail(fmt.Errorf("B: unexpected data channel %q", dc.Label()))
			return
		}
		b.attachChannel(dc)
	})

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	a.offer(true)

	// One goroutine drives both peers' signalling: pion posts candidates
	// and messages to channels, the clients' read loops post server
	// messages.
	for _, m := range takeQueued(ca) {
		a.serverMessage(m)
	}
	for _, m := range takeQueued(cb) {
		b.serverMessage(m)
	}
	var gotA, gotB string
	for gotA == "" || gotB == "" || len(a.pending) > 0 || len(b.pending) > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("no exchange within the time limit: A got %q, B got %q, unanswered signals A %v B %v, ICE A %s B %s",
				gotA, gotB, a.pending, b.pending, a.pc.ICEConnectionState(), b.pc.ICEConnectionState())
		case err := <-a.errs:
			t.Fatal(err)
		case err := <-b.errs:
			t.Fatal(err)
		case c := <-a.local:
			a.localCandidate(c)
		case c := <-b.local:
			b.localCandidate(c)
		case m, ok := <-ca.in:
			if !ok {
				t.Fatal("A's signalling connection closed")
			}
			a.serverMessage(m)
		case m, ok := <-cb.in:
			if !ok {
				t.Fatal("B's signalling connection closed")
			}
			b.serverMessage(m)
		case gotA = <-a.received:
		case gotB = <-b.received:
		}
	}
	if gotA != "hello from B" || gotB != "hello from A" {
		t.Fatalf("A got %q, B got %q", gotA, gotB)
	}
	if b.remote != owner.id {
		t.Errorf("B saw signals from %q, want the owner %q", b.remote, owner.id)
	}
	pair, err := a.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("A has no selected candidate pair (%v)", err)
	}
	if pair.Local.Address != "127.0.0.1" || pair.Remote.Address != "127.0.0.1" {
		t.Errorf("selected pair %s left loopback", pair)
	}
	if b.queued == 0 {
		t.Errorf("B never had to queue an early candidate: the test did not exercise the queue")
	}
	t.Logf("connected and exchanged messages in %v (B queued %d early candidate(s))", time.Since(start).Round(time.Millisecond), b.queued)
}
