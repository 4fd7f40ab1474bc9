package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
)

// evilServer is a compromised lepeerchat server, as a proxy in front of
// the real one: it can lie about one member's identity key to another
// (lie), and it can sit between every pair of members (intercept): each
// signal one member sends another goes instead to a pion peer posing as
// that other, so that both ends connect to it, each through its own DTLS.
type evilServer struct {
	*httptest.Server
	upstream string

	mu                  sync.Mutex
	victim, target, key string
	intercept           bool
	// fakes are the pion peers of intercept, by "victim as".
	fakes map[string]*fakePeer
}

// newEvilServer starts the proxy in front of srv; it stops with the test.
func newEvilServer(t *testing.T, srv *server) *evilServer {
	t.Helper()
	upstream, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	e := &evilServer{upstream: srv.URL, fakes: map[string]*fakePeer{}}
	pages := httputil.NewSingleHostReverseProxy(upstream)
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			e.relay(w, r)
			return
		}
		pages.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		e.Close()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, f := range e.fakes {
			f.pc.Close()
		}
	})
	return e
}

// lie makes the proxy tell victim that target's key is key.
func (e *evilServer) lie(victim, target, key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.victim, e.target, e.key = victim, target, key
}

// interceptAll makes the proxy put a pion peer between every two members
// that signal to each other from now on.
func (e *evilServer) interceptAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.intercept = true
}

// connected lists the "victim as" pairs whose pion peer is connected.
func (e *evilServer) connected() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for k, f := range e.fakes {
		if f.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
			out = append(out, k)
		}
	}
	return out
}

// relay connects one browser WebSocket to the real server and copies
// frames both ways until either side closes, rewriting or diverting what
// it was told to.
func (e *evilServer) relay(w http.ResponseWriter, r *http.Request) {
	down, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"lepeerchat.v1"}})
	if err != nil {
		return
	}
	defer down.CloseNow()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	up, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.upstream, "http")+"/ws", &websocket.DialOptions{
		Subprotocols: []string{"lepeerchat.v1"},
		HTTPHeader:   http.Header{"Origin": {e.upstream}},
	})
	if err != nil {
		down.Close(websocket.StatusInternalError, "upstream")
		return
	}
	defer up.CloseNow()
	up.SetReadLimit(-1)
	down.SetReadLimit(-1)
	var selfMu sync.Mutex
	self := "" // the member of this connection, once its joined reply names it
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		for {
			typ, data, err := down.Read(ctx)
			if err != nil {
				return
			}
			selfMu.Lock()
			me := self
			selfMu.Unlock()
			if e.divert(ctx, down, me, data) {
				continue
			}
			if up.Write(ctx, typ, data) != nil {
				return
			}
		}
	}()
	for {
		typ, data, err := up.Read(ctx)
		if err != nil {
			break
		}
		selfMu.Lock()
		data, self = e.rewrite(data, self)
		selfMu.Unlock()
		if down.Write(ctx, typ, data) != nil {
			break
		}
	}
	cancel()
	<-done
}

// rewrite rewrites one server message for the connection of member self
// ("" until its joined reply names it), and returns it with the member.
func (e *evilServer) rewrite(data []byte, self string) ([]byte, string) {
	var msg map[string]any
	if json.Unmarshal(data, &msg) != nil {
		return data, self
	}
	if msg["type"] == "joined" {
		if s, ok := msg["self"].(map[string]any); ok {
			self, _ = s["id"].(string)
		}
	}
	e.mu.Lock()
	victim, target, key := e.victim, e.target, e.key
	e.mu.Unlock()
	if self == "" || self != victim || !replaceKey(msg, target, key) {
		return data, self
	}
	out, err := json.Marshal(msg)
	if err != nil {
		return data, self
	}
	return out, self
}

// divert hands a signal from member self to the pion peer posing as its
// recipient, when intercepting; it reports whether it did.
func (e *evilServer) divert(ctx context.Context, down *websocket.Conn, self string, data []byte) bool {
	var msg struct {
		Type  string          `json:"type"`
		ID    int             `json:"id"`
		To    string          `json:"to"`
		Quiet bool            `json:"quiet"`
		Data  json.RawMessage `json:"data"`
	}
	if json.Unmarshal(data, &msg) != nil || msg.Type != "signal" || self == "" {
		return false
	}
	e.mu.Lock()
	if !e.intercept {
		e.mu.Unlock()
		return false
	}
	f := e.fakes[self+" "+msg.To]
	if f == nil {
		var err error
		if f, err = newFakePeer(ctx, down, self, msg.To); err != nil {
			// Relayed honestly instead: the test sees no one in the middle.
			e.mu.Unlock()
			return false
		}
		e.fakes[self+" "+msg.To] = f
	}
	e.mu.Unlock()
	if !msg.Quiet {
		down.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"ok","re":%d}`, msg.ID))
	}
	f.handle(msg.Data)
	return true
}

// fakePeer is a pion peer posing as member as towards member victim: it
// speaks the mesh's signalling (web/static/js/mesh.js) over the victim's
// own WebSocket, as if the server relayed it from as.
type fakePeer struct {
	ctx    context.Context
	down   *websocket.Conn
	victim string
	as     string
	polite bool
	pc     *webrtc.PeerConnection

	mu      sync.Mutex // orders what the peer does, signal after signal
	early   []webrtc.ICECandidateInit
	offered bool
}

func newFakePeer(ctx context.Context, down *websocket.Conn, victim, as string) (*fakePeer, error) {
	pc, err := interopAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	// The mesh's one negotiated data channel, so that what the victim sends
	// on it has somewhere to go.
	negotiated, id := true, uint16(0)
	if _, err := pc.CreateDataChannel("lepeerchat", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}); err != nil {
		pc.Close()
		return nil, err
	}
	f := &fakePeer{ctx: ctx, down: down, victim: victim, as: as, polite: as < victim, pc: pc}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			f.send(map[string]any{"candidate": c.ToJSON()})
		}
	})
	return f, nil
}

// send sends signal data to the victim as if from as.
func (f *fakePeer) send(data map[string]any) {
	data["sid"] = "fake-" + f.as
	msg, _ := json.Marshal(map[string]any{"type": "signal", "from": f.as, "data": data})
	f.down.Write(f.ctx, websocket.MessageText, msg)
}

// handle applies one signal of the victim: answers its offers, takes its
// answers and candidates, and, when impolite, offers on its hello.
func (f *fakePeer) handle(raw json.RawMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var data struct {
		Hello       bool                       `json:"hello"`
		Description *webrtc.SessionDescription `json:"description"`
		Candidate   *webrtc.ICECandidateInit   `json:"candidate"`
	}
	if json.Unmarshal(raw, &data) != nil {
		return
	}
	switch {
	case data.Hello && !f.polite && !f.offered:
		offer, err := f.pc.CreateOffer(nil)
		if err != nil || f.pc.SetLocalDescription(offer) != nil {
			return
		}
		f.offered = true
		f.send(map[string]any{"description": offer})
	case data.Description != nil:
		if f.pc.SetRemoteDescription(*data.Description) != nil {
			return
		}
		for _, c := range f.early {
			f.pc.AddICECandidate(c)
		}
		f.early = nil
		if data.Description.Type != webrtc.SDPTypeOffer {
			return
		}
		answer, err := f.pc.CreateAnswer(nil)
		if err != nil || f.pc.SetLocalDescription(answer) != nil {
			return
		}
		f.send(map[string]any{"description": answer})
	case data.Candidate != nil:
		if f.pc.RemoteDescription() == nil {
			f.early = append(f.early, *data.Candidate)
			return
		}
		f.pc.AddICECandidate(*data.Candidate)
	}
}
