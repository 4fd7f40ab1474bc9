package signal

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"lepeerchat/store"
	"lepeerchat/store/boltstore"
)

// clock is a settable time source shared by a test and its server.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testServer is a real signal server on a real listener, with a bbolt store
// in a temporary data folder.
type testServer struct {
	t     testing.TB
	srv   *Server
	http  *httptest.Server
	store store.Store
	dir   string
	cfg   Config
	once  sync.Once
}

// startServer starts a server on dir (a new temp dir when empty), applying
// opts to its configuration.
func startServer(t testing.TB, dir string, opts ...func(*Config)) *testServer {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := boltstore.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	// Sessions park in the poller after a millisecond of silence, so that
	// every test takes them through parking and resuming; the cluster
	// tests' nodes keep the default.
	cfg := Config{Store: st, Bus: store.NewLocalBus(), IdleAfter: time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("start server: %v", err)
	}
	ts := &testServer{t: t, srv: srv, http: httptest.NewServer(srv), store: st, dir: dir, cfg: srv.cfg}
	t.Cleanup(ts.stop)
	return ts
}

// stop shuts the server down as the binary does on SIGTERM. It may be
// called more than once.
func (ts *testServer) stop() { ts.once.Do(ts.shutdown) }

func (ts *testServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		ts.t.Errorf("shutdown: %v", err)
	}
	ts.http.Close()
	if err := ts.store.Close(); err != nil {
		ts.t.Errorf("close store: %v", err)
	}
}

func (ts *testServer) wsURL() string { return "ws" + strings.TrimPrefix(ts.http.URL, "http") + "/ws" }

// msg is a server message, decoded loosely.
type msg map[string]any

func (m msg) str(key string) string { s, _ := m[key].(string); return s }

func (m msg) obj(key string) msg { o, _ := m[key].(map[string]any); return o }

func (m msg) code() string { return m.obj("error").str("code") }

// client is one WebSocket connection speaking the protocol.
type client struct {
	t      testing.TB
	conn   *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	in     chan msg
	// closed receives the connection's end: its close status, if any.
	closed chan error
	mu     sync.Mutex
	nextID uint64
	queue  []msg // messages read while waiting for something else
}

const waitTimeout = 5 * time.Second

func dial(t testing.TB, ts *testServer) *client {
	t.Helper()
	c := dialRaw(t, ts)
	if w := c.next(); w.str("type") != "welcome" {
		t.Fatalf("first message = %v, want welcome", w)
	}
	return c
}

// dialRaw connects without reading the welcome message.
func dialRaw(t testing.TB, ts *testServer) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, _, err := websocket.Dial(ctx, ts.wsURL(), &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		cancel()
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(1 << 20)
	c := &client{t: t, conn: conn, ctx: ctx, cancel: cancel, in: make(chan msg, 1024), closed: make(chan error, 1)}
	go c.readLoop()
	t.Cleanup(c.close)
	return c
}

func (c *client) readLoop() {
	for {
		_, data, err := c.conn.Read(c.ctx)
		if err != nil {
			c.closed <- err
			close(c.in)
			return
		}
		var m msg
		if err := json.Unmarshal(data, &m); err != nil {
			c.t.Errorf("server sent invalid JSON %q: %v", data, err)
			continue
		}
		c.in <- m
	}
}

func (c *client) close() {
	c.conn.Close(websocket.StatusNormalClosure, "")
	c.cancel()
}

// next returns the next message not yet taken, failing after waitTimeout.
func (c *client) next() msg {
	c.t.Helper()
	if len(c.queue) > 0 {
		m := c.queue[0]
		c.queue = c.queue[1:]
		return m
	}
	select {
	case m, ok := <-c.in:
		if !ok {
			c.t.Fatalf("connection closed while waiting for a message")
		}
		return m
	case <-time.After(waitTimeout):
		c.t.Fatalf("no message within %v", waitTimeout)
		return nil
	}
}

// await returns the first message for which match is true, keeping the
// others for later.
func (c *client) await(what string, match func(msg) bool) msg {
	c.t.Helper()
	for i, m := range c.queue {
		if match(m) {
			c.queue = append(c.queue[:i:i], c.queue[i+1:]...)
			return m
		}
	}
	deadline := time.After(waitTimeout)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %s", what)
			}
			if match(m) {
				return m
			}
			c.queue = append(c.queue, m)
		case <-deadline:
			c.t.Fatalf("no %s within %v (other messages: %v)", what, waitTimeout, c.queue)
			return nil
		}
	}
}

// event waits for a pushed message of the given type.
func (c *client) event(typ string) msg {
	c.t.Helper()
	return c.await("event "+typ, func(m msg) bool { return m.str("type") == typ && m["re"] == nil })
}

// noEvent checks that no message of the given type arrives within d.
func (c *client) noEvent(typ string, d time.Duration) {
	c.t.Helper()
	for _, m := range c.queue {
		if m.str("type") == typ {
			c.t.Fatalf("unexpected %s: %v", typ, m)
		}
	}
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				return
			}
			if m.str("type") == typ {
				c.t.Fatalf("unexpected %s: %v", typ, m)
			}
			c.queue = append(c.queue, m)
		case <-deadline:
			return
		}
	}
}

// sendRaw writes one text frame as is.
func (c *client) sendRaw(data string) {
	c.t.Helper()
	if err := c.conn.Write(c.ctx, websocket.MessageText, []byte(data)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// call sends a message of type typ with fields and returns the reply.
func (c *client) call(typ string, fields map[string]any) msg {
	c.t.Helper()
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	m := map[string]any{"id": id, "type": typ}
	for k, v := range fields {
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		c.t.Fatalf("marshal: %v", err)
	}
	c.sendRaw(string(data))
	return c.await(fmt.Sprintf("reply to %s #%d", typ, id), func(m msg) bool {
		re, ok := m["re"].(float64)
		return ok && uint64(re) == id
	})
}

// mustCall is call, failing the test on a negative reply.
func (c *client) mustCall(typ string, fields map[string]any) msg {
	c.t.Helper()
	r := c.call(typ, fields)
	if r.str("type") == "error" {
		c.t.Fatalf("%s refused: %v", typ, r.obj("error"))
	}
	return r
}

// refused is call, failing the test unless the reply is an error with code.
func (c *client) refused(code, typ string, fields map[string]any) msg {
	c.t.Helper()
	r := c.call(typ, fields)
	if r.code() != code {
		c.t.Fatalf("%s: reply %v, want error %s", typ, r, code)
	}
	if r.obj("error").str("message") == "" {
		c.t.Fatalf("%s: error %s has no message", typ, code)
	}
	return r
}

// annAndBob puts two new connections in one new room: Ann, its owner, on
// a and Bob on b, once Ann has seen him join.
func annAndBob(t testing.TB, ts *testServer) (a, b *client, owner, guest member) {
	t.Helper()
	a, b = dial(t, ts), dial(t, ts)
	owner = createRoom(a, "r", "Ann")
	guest = joinRoom(b, owner.room, invite(a, nil), "Bob")
	a.event("member.joined")
	return a, b, owner, guest
}

// member is a participant's identity as the browser keeps it.
type member struct {
	room, id, secret, name string
}

// createRoom creates a room as c and returns the owner's identity.
func createRoom(c *client, roomName, user string) member {
	c.t.Helper()
	r := c.mustCall("create", map[string]any{"room": roomName, "name": user})
	self := r.obj("self")
	return member{room: r.obj("room").str("id"), id: self.str("id"), secret: self.str("secret"), name: self.str("name")}
}

// invite issues an invitation as the owner connected on c and returns its
// token.
func invite(c *client, fields map[string]any) string {
	c.t.Helper()
	return c.mustCall("invite", fields).obj("invite").str("token")
}

// joinRoom redeems an invitation as c.
func joinRoom(c *client, roomID, token, user string) member {
	c.t.Helper()
	r := c.mustCall("join", map[string]any{"room": roomID, "invite": token, "name": user})
	self := r.obj("self")
	return member{room: roomID, id: self.str("id"), secret: self.str("secret"), name: self.str("name")}
}

func (m member) creds() map[string]any {
	return map[string]any{"room": m.room, "member": m.id, "secret": m.secret}
}
