// Package turntest runs a pion WebRTC peer that enters a lepeerchat room
// through the signalling server, connects to one other member with the ICE
// servers the server gave it, exchanges a chat message and Opus audio both
// ways (and optionally a bulk transfer), and reports how it connected. Tests
// of the relay use it, in one process on loopback or one process per
// network namespace. Allocate opens a single relay, for tests of who may.
package turntest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"lepeerchat/turn"
)

// Options say how a peer enters its room and connects.
type Options struct {
	// URL is the server's WebSocket endpoint, ws://host:port/ws.
	URL string
	// Name is the peer's username.
	Name string
	// CreateRoom, when set, creates a room of that name: the peer is its
	// owner, invites the other (OnInvite) and makes the WebRTC offer.
	CreateRoom string
	OnInvite   func(room, invite string) `json:"-"`
	// Room and Invite make the peer join an existing room instead.
	Room, Invite string

	// RelayOnly sets the ICE transport policy to "relay".
	RelayOnly bool
	// Loopback keeps ICE on 127.0.0.1 (pion otherwise ignores loopback).
	Loopback bool
	// BulkBytes is the size of a transfer the offering peer sends over a
	// data channel of its own once connected, to measure the path. Give
	// both peers the same value: the answerer waits for that many bytes.
	BulkBytes int
	// AudioPackets is how many Opus packets each side must receive.
	// Default 25 (half a second).
	AudioPackets int

	// Logf, when set, receives progress notes.
	Logf func(format string, args ...any) `json:"-"`
}

// Candidate is one end of the selected candidate pair.
type Candidate struct {
	Type     string `json:"type"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	Port     int    `json:"port"`
	// Related is the related address (a relay's or a server-reflexive
	// candidate's base).
	Related string `json:"related,omitempty"`
}

func (c Candidate) String() string {
	return fmt.Sprintf("%s %s %s:%d", c.Type, c.Protocol, c.Address, c.Port)
}

// Result is what a peer saw.
type Result struct {
	Member     string           `json:"member"`
	ICEServers []turn.ICEServer `json:"iceServers"`
	// Chat is the chat message received from the other peer.
	Chat string `json:"chat"`
	// AudioPackets counts the Opus packets received.
	AudioPackets int `json:"audioPackets"`
	// Local and Remote are the selected candidate pair.
	Local  Candidate `json:"local"`
	Remote Candidate `json:"remote"`
	// Connected is the time from joining to ICE connected.
	Connected time.Duration `json:"connected"`
	// Bulk is the transfer measured on the offering side: bytes and the
	// time from the first byte sent to the receiver's acknowledgement of
	// the last.
	BulkBytes int           `json:"bulkBytes,omitempty"`
	Bulk      time.Duration `json:"bulk,omitempty"`
}

// Relayed tells whether the selected pair goes through a TURN relay.
func (r *Result) Relayed() bool { return r.Local.Type == "relay" || r.Remote.Type == "relay" }

// BulkMBps is the measured transfer rate in megabytes (10^6) per second.
func (r *Result) BulkMBps() float64 {
	if r.Bulk <= 0 {
		return 0
	}
	return float64(r.BulkBytes) / r.Bulk.Seconds() / 1e6
}

// serverMsg is any message of the server, decoded loosely.
type serverMsg struct {
	Re    *uint64 `json:"re"`
	Type  string  `json:"type"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Self *struct {
		ID string `json:"id"`
	} `json:"self"`
	Room *struct {
		ID    string `json:"id"`
		Owner string `json:"owner"`
	} `json:"room"`
	Invite *struct {
		Token string `json:"token"`
	} `json:"invite"`
	Member     json.RawMessage  `json:"member"`
	From       string           `json:"from"`
	Data       json.RawMessage  `json:"data"`
	ICEServers []turn.ICEServer `json:"iceServers"`
}

type signalData struct {
	Description *webrtc.SessionDescription `json:"description,omitempty"`
	Candidate   *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
}

// event is something pion reported, handed to the peer's loop.
type event struct {
	candidate *webrtc.ICECandidate
	gathered  bool
	chat      string
	chatOpen  *webrtc.DataChannel
	peerDone  bool
	audioOK   bool
	bulkDone  time.Duration
	bulkGot   bool
	connected bool
	err       error
}

type peer struct {
	o      Options
	conn   *websocket.Conn
	nextID uint64
	queue  []serverMsg
	in     chan serverMsg
	readEr chan error
	events chan event
	res    Result
	start  time.Time

	pc     *webrtc.PeerConnection
	remote string
	early  []webrtc.ICECandidateInit
	// audio counts the Opus packets received.
	audio atomic.Int64
}

// Run enters the room, connects to the other member and returns when both
// have everything (chat, audio, bulk transfer) or ctx ends.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.AudioPackets == 0 {
		o.AudioPackets = 25
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, o.URL, &websocket.DialOptions{Subprotocols: []string{"lepeerchat.v1"}})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", o.URL, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	p := &peer{
		o: o, conn: conn, start: time.Now(),
		in: make(chan serverMsg, 256), readEr: make(chan error, 1), events: make(chan event, 256),
	}
	go p.readLoop(ctx)
	if err := p.enter(ctx); err != nil {
		return nil, err
	}
	if err := p.connect(ctx); err != nil {
		if p.pc != nil {
			return &p.res, fmt.Errorf("%w (ICE %s, signalling %s)", err, p.pc.ICEConnectionState(), p.pc.SignalingState())
		}
		return &p.res, err
	}
	return &p.res, nil
}

func (p *peer) logf(format string, args ...any) {
	if p.o.Logf != nil {
		p.o.Logf(p.o.Name+": "+format, args...)
	}
}

func (p *peer) readLoop(ctx context.Context) {
	for {
		_, data, err := p.conn.Read(ctx)
		if err != nil {
			p.readEr <- err
			return
		}
		var m serverMsg
		if err := json.Unmarshal(data, &m); err != nil {
			p.readEr <- fmt.Errorf("server message %s: %w", data, err)
			return
		}
		p.in <- m
	}
}

func (p *peer) send(ctx context.Context, typ string, fields map[string]any) (uint64, error) {
	p.nextID++
	msg := map[string]any{"id": p.nextID, "type": typ}
	for k, v := range fields {
		msg[k] = v
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return 0, err
	}
	return p.nextID, p.conn.Write(ctx, websocket.MessageText, b)
}

// call sends a request and waits for its reply, keeping the other
// messages for later.
func (p *peer) call(ctx context.Context, typ string, fields map[string]any) (serverMsg, error) {
	id, err := p.send(ctx, typ, fields)
	if err != nil {
		return serverMsg{}, err
	}
	for {
		select {
		case <-ctx.Done():
			return serverMsg{}, fmt.Errorf("no reply to %s: %w", typ, ctx.Err())
		case err := <-p.readEr:
			return serverMsg{}, fmt.Errorf("waiting for the reply to %s: %w", typ, err)
		case m := <-p.in:
			if m.Re == nil || *m.Re != id {
				p.queue = append(p.queue, m)
				continue
			}
			if m.Type == "error" {
				return m, fmt.Errorf("%s refused: %s (%s)", typ, m.Error.Code, m.Error.Message)
			}
			return m, nil
		}
	}
}

// enter creates or joins the room.
func (p *peer) enter(ctx context.Context) error {
	var (
		joined serverMsg
		err    error
	)
	if p.o.CreateRoom != "" {
		joined, err = p.call(ctx, "create", map[string]any{"room": p.o.CreateRoom, "name": p.o.Name})
	} else {
		joined, err = p.call(ctx, "join", map[string]any{"room": p.o.Room, "invite": p.o.Invite, "name": p.o.Name})
	}
	if err != nil {
		return err
	}
	if joined.Self == nil || joined.Room == nil {
		return fmt.Errorf("joined reply without self or room: %+v", joined)
	}
	p.res.Member = joined.Self.ID
	p.res.ICEServers = joined.ICEServers
	p.logf("in room %s as %s with ICE servers %v", joined.Room.ID, joined.Self.ID, urlsOf(joined.ICEServers))
	if p.o.CreateRoom == "" {
		p.remote = joined.Room.Owner
	} else {
		inv, err := p.call(ctx, "invite", nil)
		if err != nil {
			return err
		}
		if p.o.OnInvite != nil {
			p.o.OnInvite(joined.Room.ID, inv.Invite.Token)
		}
	}
	return nil
}

func urlsOf(servers []turn.ICEServer) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.URLs...)
	}
	return out
}

func (p *peer) api() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if p.o.Loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	se.LoggerFactory = lf
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

func (p *peer) post(e event) {
	select {
	case p.events <- e:
	default:
	}
}

// newPC makes the peer connection with its audio track and, for the
// offerer, its data channels.
func (p *peer) newPC(ctx context.Context) error {
	cfg := webrtc.Configuration{}
	for _, s := range p.res.ICEServers {
		cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	if p.o.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := p.api().NewPeerConnection(cfg)
	if err != nil {
		return err
	}
	p.pc = pc
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			p.post(event{gathered: true})
			return
		}
		p.post(event{candidate: c})
	})
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		p.logf("ICE %s", s)
		switch s {
		case webrtc.ICEConnectionStateConnected:
			p.post(event{connected: true})
		case webrtc.ICEConnectionStateFailed:
			p.post(event{err: errors.New("ICE failed")})
		}
	})

	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", p.o.Name)
	if err != nil {
		return err
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		// 20 ms Opus frames; the payload is a silent frame.
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := track.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}); err != nil && ctx.Err() == nil {
					p.post(event{err: fmt.Errorf("write audio: %w", err)})
					return
				}
			}
		}
	}()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Codec().MimeType != webrtc.MimeTypeOpus {
			p.post(event{err: fmt.Errorf("track of %s, want Opus", tr.Codec().MimeType)})
			return
		}
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			if n := p.audio.Add(1); n == int64(p.o.AudioPackets) {
				p.post(event{audioOK: true})
			}
		}
	})

	if p.o.CreateRoom != "" {
		chat, err := pc.CreateDataChannel("chat", nil)
		if err != nil {
			return err
		}
		p.chatChannel(chat)
		if p.o.BulkBytes > 0 {
			bulk, err := pc.CreateDataChannel("bulk", nil)
			if err != nil {
				return err
			}
			p.bulkSender(bulk)
		}
	} else {
		pc.OnDataChannel(func(dc *webrtc.DataChannel) {
			switch dc.Label() {
			case "chat":
				p.chatChannel(dc)
			case "bulk":
				p.bulkReceiver(dc)
			}
		})
	}
	return nil
}

func (p *peer) chatChannel(dc *webrtc.DataChannel) {
	dc.OnOpen(func() {
		if err := dc.SendText("hello from " + p.o.Name); err != nil {
			p.post(event{err: fmt.Errorf("send chat: %w", err)})
			return
		}
		p.post(event{chatOpen: dc})
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if string(m.Data) == "done" {
			p.post(event{peerDone: true})
			return
		}
		p.post(event{chat: string(m.Data)})
	})
}

const bulkChunk = 16 << 10

// bulkSender sends BulkBytes once the channel opens and reports the time
// until the receiver acknowledges the last byte.
func (p *peer) bulkSender(dc *webrtc.DataChannel) {
	var start atomic.Int64 // unix nanoseconds of the first byte
	low := make(chan struct{}, 1)
	dc.SetBufferedAmountLowThreshold(1 << 20)
	dc.OnBufferedAmountLow(func() {
		select {
		case low <- struct{}{}:
		default:
		}
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if string(m.Data) == "ok" {
			p.post(event{bulkDone: time.Since(time.Unix(0, start.Load()))})
		}
	})
	dc.OnOpen(func() {
		go func() {
			chunk := make([]byte, bulkChunk)
			start.Store(time.Now().UnixNano())
			for sent := 0; sent < p.o.BulkBytes; {
				for dc.BufferedAmount() > 4<<20 {
					select {
					case <-low:
					case <-time.After(time.Second):
					}
				}
				n := min(bulkChunk, p.o.BulkBytes-sent)
				if err := dc.Send(chunk[:n]); err != nil {
					p.post(event{err: fmt.Errorf("bulk send: %w", err)})
					return
				}
				sent += n
			}
		}()
	})
}

// bulkReceiver counts bytes and acknowledges once it has BulkBytes.
func (p *peer) bulkReceiver(dc *webrtc.DataChannel) {
	var got int
	var once sync.Once
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		got += len(m.Data)
		if got >= p.o.BulkBytes && p.o.BulkBytes > 0 {
			once.Do(func() {
				if err := dc.SendText("ok"); err != nil {
					p.post(event{err: fmt.Errorf("bulk ack: %w", err)})
				}
				p.post(event{bulkGot: true})
			})
		}
	})
}

// signal relays data to the other member through the server.
func (p *peer) signal(ctx context.Context, data signalData) error {
	_, err := p.send(ctx, "signal", map[string]any{"to": p.remote, "data": data})
	return err
}

// connect runs the WebRTC exchange until done or ctx ends.
func (p *peer) connect(ctx context.Context) error {
	offerer := p.o.CreateRoom != ""
	if !offerer {
		if err := p.newPC(ctx); err != nil {
			return err
		}
	}
	var (
		chat        *webrtc.DataChannel
		gotChat     bool
		audioOK     bool
		bulkOK      = p.o.BulkBytes == 0
		sentDone    bool
		peerDone    bool
		pairChecked bool
	)
	handle := func(m serverMsg) error {
		switch {
		case m.Re != nil:
			if m.Type == "error" {
				return fmt.Errorf("server refused a message: %s (%s)", m.Error.Code, m.Error.Message)
			}
		case m.Type == "member.joined" && offerer && p.pc == nil:
			var who struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(m.Member, &who); err != nil {
				return err
			}
			p.remote = who.ID
			if err := p.newPC(ctx); err != nil {
				return err
			}
			offer, err := p.pc.CreateOffer(nil)
			if err != nil {
				return err
			}
			if err := p.pc.SetLocalDescription(offer); err != nil {
				return err
			}
			return p.signal(ctx, signalData{Description: &offer})
		case m.Type == "signal":
			return p.remoteSignal(ctx, m)
		}
		return nil
	}
	for _, m := range p.queue {
		if err := handle(m); err != nil {
			return err
		}
	}
	p.queue = nil
	for !(sentDone && peerDone) {
		if !sentDone && gotChat && audioOK && bulkOK && chat != nil && pairChecked {
			if err := chat.SendText("done"); err != nil {
				return fmt.Errorf("send done: %w", err)
			}
			sentDone = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not done in time (chat %v, audio %d packets, bulk %v, done sent %v received %v): %w",
				gotChat, p.audio.Load(), bulkOK, sentDone, peerDone, ctx.Err())
		case err := <-p.readEr:
			return fmt.Errorf("signalling connection: %w", err)
		case m := <-p.in:
			if err := handle(m); err != nil {
				return err
			}
		case e := <-p.events:
			switch {
			case e.err != nil:
				return e.err
			case e.candidate != nil:
				init := e.candidate.ToJSON()
				if err := p.signal(ctx, signalData{Candidate: &init}); err != nil {
					return err
				}
			case e.connected:
				p.res.Connected = time.Since(p.start)
			case e.chatOpen != nil:
				chat = e.chatOpen
			case e.chat != "":
				p.res.Chat = e.chat
				gotChat = true
			case e.audioOK:
				audioOK = true
			case e.bulkDone > 0:
				p.res.BulkBytes, p.res.Bulk = p.o.BulkBytes, e.bulkDone
				bulkOK = true
			case e.bulkGot:
				bulkOK = true
			case e.peerDone:
				peerDone = true
			}
		}
		if !pairChecked && chat != nil {
			if err := p.readPair(); err == nil {
				pairChecked = true
			}
		}
	}
	p.res.AudioPackets = int(p.audio.Load())
	p.logf("done: pair %s ⇄ %s, chat %q, %d audio packets", p.res.Local, p.res.Remote, p.res.Chat, p.res.AudioPackets)
	// Let the last "done" leave before closing.
	time.Sleep(100 * time.Millisecond)
	return p.pc.Close()
}

func (p *peer) remoteSignal(ctx context.Context, m serverMsg) error {
	if m.From != p.remote {
		return fmt.Errorf("signal from %q, want %q", m.From, p.remote)
	}
	var data signalData
	if err := json.Unmarshal(m.Data, &data); err != nil {
		return fmt.Errorf("signal data %s: %w", m.Data, err)
	}
	switch {
	case data.Description != nil:
		if err := p.pc.SetRemoteDescription(*data.Description); err != nil {
			return fmt.Errorf("set remote %s: %w", data.Description.Type, err)
		}
		for _, c := range p.early {
			if err := p.pc.AddICECandidate(c); err != nil {
				return err
			}
		}
		p.early = nil
		if data.Description.Type == webrtc.SDPTypeOffer {
			answer, err := p.pc.CreateAnswer(nil)
			if err != nil {
				return err
			}
			if err := p.pc.SetLocalDescription(answer); err != nil {
				return err
			}
			return p.signal(ctx, signalData{Description: &answer})
		}
	case data.Candidate != nil:
		if p.pc == nil || p.pc.RemoteDescription() == nil {
			p.early = append(p.early, *data.Candidate)
			return nil
		}
		return p.pc.AddICECandidate(*data.Candidate)
	}
	return nil
}

// readPair records the selected candidate pair.
func (p *peer) readPair() error {
	sctp := p.pc.SCTP()
	if sctp == nil {
		return errors.New("no SCTP transport")
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil {
		return err
	}
	if pair == nil {
		return errors.New("no selected pair yet")
	}
	conv := func(c *webrtc.ICECandidate) Candidate {
		return Candidate{Type: c.Typ.String(), Protocol: c.Protocol.String(), Address: c.Address, Port: int(c.Port), Related: fmt.Sprintf("%s:%d", c.RelatedAddress, c.RelatedPort)}
	}
	p.res.Local, p.res.Remote = conv(pair.Local), conv(pair.Remote)
	return nil
}
