package signal

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fastConfig raises the rate limit so that a test can send as fast as it
// likes; the limiter still runs.
func fastConfig(c *Config) { c.Rate, c.Burst = 1e6, 1e6 }

func TestQueuedMessagesKeepTheirOrder(t *testing.T) {
	ts := startServer(t, "", fastConfig)
	a, b := dial(t, ts), dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	guest := joinRoom(b, owner.room, invite(a, nil), "Bob")
	a.event("member.joined")

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
	ts := startServer(t, "", fastConfig)
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		sess.mu.Lock()
		code := sess.closedWith
		sess.mu.Unlock()
		if code != 0 {
			if code != websocket.StatusPolicyViolation {
				t.Fatalf("closed with %v, want policy violation", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slow consumer not cut after %d messages", sent)
		}
		for range 20 {
			sent++
			a.sendRaw(fmt.Sprintf(`{"type":"signal","to":%q,"data":{"n":%d,"pad":%q}}`, bID, sent, pad))
		}
		for range 20 {
			if r := a.next(); r.str("type") != "ok" {
				// Once b is cut, it is no longer in the room.
				if r.code() != "peer_unavailable" {
					t.Fatalf("reply to the sender: %v", r)
				}
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
