package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fastConfig raises the rate limits, of the connection and of each pair of
// members, so that a test can send as fast as it likes; the limiters
// still run.
func fastConfig(c *Config) {
	c.Rate, c.Burst = 1e6, 1e6
	c.PeerRate, c.PeerBurst = 1e6, 1e6
}

func TestQueuedMessagesKeepTheirOrder(t *testing.T) {
	ts := startServer(t, "", fastConfig)
	a, b, owner, guest := annAndBob(t, ts)

	// Sent without waiting, so that replies and forwarded signals pile up
	// and leave in batches; fewer than outQueue at a time, so that even a
	// starved writer never lets the queue overflow.
	const n, window = 600, outQueue - 56
	var sb strings.Builder
	for first := 1; first <= n; first += window {
		last := min(first+window-1, n)
		for i := first; i <= last; i++ {
			sb.Reset()
			fmt.Fprintf(&sb, `{"id":%d,"type":"signal","to":%q,"data":{"n":%d}}`, i, guest.id, i)
			a.sendRaw(sb.String())
		}
		for i := first; i <= last; i++ {
			m := b.next()
			if m.str("type") != "signal" || m.str("from") != owner.id || m.obj("data")["n"] != float64(i) {
				t.Fatalf("signal %d: got %v", i, m)
			}
			r := a.next()
			if r.str("type") != "ok" || r["re"] != float64(i) {
				t.Fatalf("reply %d: got %v", i, r)
			}
		}
	}
}

// sessionOf returns the server's session attached as member.
func sessionOf(t *testing.T, ts *testServer, member string) *session {
	t.Helper()
	ts.srv.mu.Lock()
	defer ts.srv.mu.Unlock()
	for s := range ts.srv.sessions {
		if att := s.attached(); att != nil && att.member == member {
			return s
		}
	}
	t.Fatalf("no session for member %s", member)
	return nil
}

func TestSlowConsumerIsCutAndOthersAreNot(t *testing.T) {
	// A write that cannot complete would end the connection as well, after
	// WriteTimeout, without a close frame: on a loaded machine that could
	// come first. Set far off, the queue's bound is what cuts.
	ts := startServer(t, "", func(c *Config) {
		fastConfig(c)
		c.WriteTimeout = 10 * time.Minute
	})
	a := dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	token := invite(a, nil)

	// b joins, then stops reading.
	ctx := context.Background()
	b, _, err := websocket.Dial(ctx, ts.wsURL(), &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.CloseNow()
	b.SetReadLimit(1 << 20)
	if err := b.Write(ctx, websocket.MessageText, []byte(`{"id":1,"type":"join","room":"`+owner.room+`","invite":"`+token+`","name":"Bob"}`)); err != nil {
		t.Fatal(err)
	}
	var bID string
	for bID == "" {
		_, data, err := b.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Type string
			Self struct{ ID string }
		}
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		if r.Type == "error" {
			t.Fatalf("join refused: %s", data)
		}
		if r.Type == "joined" {
			bID = r.Self.ID
		}
	}
	a.event("member.joined")
	sess := sessionOf(t, ts, bID)

	// Large signals fill the socket's buffers, then the queue.
	pad := strings.Repeat("x", 60000)
	sent := 0
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sess.mu.Lock()
		code := sess.closedWith
		sess.mu.Unlock()
		if code != 0 {
			if code != closePolicyViolation {
				t.Fatalf("closed with %v, want policy violation", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slow consumer not cut after %d messages", sent)
		}
		first := sent + 1
		for range 20 {
			sent++
			a.sendRaw(fmt.Sprintf(`{"id":%d,"type":"signal","to":%q,"data":{"n":%d,"pad":%q}}`, sent, bID, sent, pad))
		}
		// Each reply is matched by its re: once b is cut, the push that
		// says so comes in between.
		for id := first; id <= sent; id++ {
			r := a.await(fmt.Sprintf("the reply to signal %d", id), func(m msg) bool { return m["re"] == float64(id) })
			if r.str("type") != "ok" && r.code() != "peer_unavailable" {
				// Once b is cut, it is no longer in the room.
				t.Fatalf("reply to the sender: %v", r)
			}
		}
	}

	// What b gets is what was sent, in order, up to the point it was cut,
	// then the close frame.
	got := 0
	for {
		_, data, err := b.Read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Fatalf("after %d signals: %v, want close 1008", got, err)
			}
			break
		}
		var m struct {
			Type string
			Data struct{ N int }
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type != "signal" {
			continue
		}
		if got++; m.Data.N != got {
			t.Fatalf("signal %d arrived as number %d", m.Data.N, got)
		}
	}
	// At most the socket's buffers and a batch went out: the queue, at
	// its bound, was dropped.
	if got == 0 || sent-got < outQueue {
		t.Fatalf("b got %d of %d signals before being cut", got, sent)
	}
	// The sender is unaffected.
	a.mustCall("ping", nil)
}

// sessionGoroutines counts the goroutines running session code.
func sessionGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("lepeerchat/signal.(*session)")) {
			count++
		}
	}
	return count
}

func TestIdleSessionsHoldNoGoroutineAndLeaveNone(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.PingInterval, c.IdleAfter = 100*time.Millisecond, 20*time.Millisecond })
	const n = 20
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, ts)
	}
	owner := createRoom(clients[0], "r", "Ann")
	token := invite(clients[0], nil)
	for i := 1; i < n; i++ {
		joinRoom(clients[i], owner.room, token, fmt.Sprintf("m%d", i))
	}
	// Pings come and go; once they are answered, each session waits for
	// data in the poller, with no goroutine (or, where there is no epoll,
	// in its read loop alone).
	want := 0
	if ts.srv.poller == nil {
		want = n
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		time.Sleep(50 * time.Millisecond)
		g := sessionGoroutines()
		if g == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines run session code for %d idle connections, want %d", g, n, want)
		}
	}
	clients[0].mustCall("ping", nil) // still connected, pings answered
	for _, c := range clients {
		c.close()
	}
	for {
		g := sessionGoroutines()
		ts.srv.mu.Lock()
		open := len(ts.srv.sessions)
		ts.srv.mu.Unlock()
		if g == 0 && open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after every client left: %d goroutines run session code, %d sessions open", g, open)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushedMessagesReachAnIdleClient(t *testing.T) {
	// No read loop is writing: pushed messages start a writer of their own.
	ts := startServer(t, "")
	a, b := dial(t, ts), dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	joinRoom(b, owner.room, invite(a, nil), "Bob")
	if ev := a.event("member.joined"); ev.obj("member").str("name") != "Bob" {
		t.Fatalf("member.joined = %v", ev)
	}
	b.close()
	if ev := a.event("member.disconnected"); ev.obj("member").str("name") != "Bob" {
		t.Fatalf("member.disconnected = %v", ev)
	}
}

func TestTextFramesOfEverySize(t *testing.T) {
	// The writer frames messages itself: each length encoding must reach
	// a client intact, in one batch.
	ts := startServer(t, "", fastConfig, func(c *Config) { c.MaxMessageBytes = 512 << 10 })
	a, b, _, guest := annAndBob(t, ts)
	// Padding in bytes (two per character): forwarded frames of under
	// 126 bytes, of up to 65,535, and longer.
	sizes := []int{0, 2, 80, 90, 200, 65400, 65600, 140000, 60000}
	for i, n := range sizes {
		a.sendRaw(fmt.Sprintf(`{"id":%d,"type":"signal","to":%q,"data":{"n":%d,"pad":%q}}`, i+1, guest.id, i, strings.Repeat("é", n/2)))
	}
	for i, n := range sizes {
		m := b.next()
		if m.obj("data")["n"] != float64(i) || m.obj("data").str("pad") != strings.Repeat("é", n/2) {
			t.Fatalf("signal %d (%d bytes of padding) arrived damaged", i, n)
		}
	}
}

func TestPipelinedSignalsAreAllAnswered(t *testing.T) {
	// A client that keeps the server's input busy must still get its
	// replies as it goes, not be taken for a slow reader. The client
	// here hands all its frames to the socket at once, so that the server
	// always has the next one read ahead; the signals go to nobody, so
	// that only the sender's queue fills.
	ts := startServer(t, "", fastConfig)
	conn, br := rawSocket(t, ts, nil)
	out := clientFrame(finBit|opText, []byte(`{"id":1,"type":"create","room":"r","name":"Ann"}`), 0x0badf00d)
	const n = 4 * outQueue
	for i := 2; i <= n+1; i++ {
		out = append(out, clientFrame(finBit|opText, fmt.Appendf(nil, `{"id":%d,"type":"signal","to":"nobody","data":{}}`, i), uint32(i))...)
	}
	go conn.Write(out)
	replies := 0
	for replies < n+1 {
		op, payload, err := readServerFrame(br)
		switch {
		case err != nil:
			t.Fatalf("after %d replies: %v", replies, err)
		case op == opClose:
			t.Fatalf("closed after %d replies: %q", replies, payload[2:])
		case bytes.Contains(payload, []byte(`"re":`)):
			replies++
		}
	}
}

func TestSessionsThatCannotParkKeepTheirGoroutine(t *testing.T) {
	ts := startServer(t, "")
	if ts.srv.poller == nil {
		t.Skip("no poller here")
	}
	// A poller whose epoll set is gone refuses every session.
	if err := ts.srv.poller.close(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, ts)
	owner := createRoom(c, "r", "Ann")
	for range 3 {
		time.Sleep(20 * time.Millisecond) // well over IdleAfter
		c.mustCall("ping", nil)
	}
	if g := sessionGoroutines(); g != 1 {
		t.Fatalf("%d goroutines run session code, want the one of the session that could not park", g)
	}
	d := dial(t, ts)
	joinRoom(d, owner.room, invite(c, nil), "Bob")
	c.event("member.joined")
}

func TestParkedSessionClosedUnderItEnds(t *testing.T) {
	// A socket closed while armed leaves the epoll set without an event
	// (the node kill of the cluster tests does this): the session still
	// ends, at the latest when its next ping cannot be written.
	ts := startServer(t, "", func(c *Config) { c.PingInterval = 50 * time.Millisecond })
	a := dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	b := dial(t, ts)
	bob := joinRoom(b, owner.room, invite(a, nil), "Bob")
	a.event("member.joined")
	sess := sessionOf(t, ts, bob.id)
	deadline := time.Now().Add(waitTimeout)
	for !sess.parked.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Bob's session never parked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sess.wire.Conn.Close()
	if ev := a.event("member.disconnected"); ev.obj("member").str("name") != "Bob" {
		t.Fatalf("member.disconnected = %v", ev)
	}
}
