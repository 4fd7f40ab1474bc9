package signal

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

func TestBadInputIsAnsweredAndTheConnectionSurvives(t *testing.T) {
	ts := startServer(t, "")
	c := dial(t, ts)
	tests := []struct {
		name  string
		frame string
		code  string
		re    any // the id the reply must name, nil when it cannot
	}{
		{"not JSON", `{"type":`, "bad_json", nil},
		{"JSON array", `[1,2]`, "bad_json", nil},
		{"JSON string", `"create"`, "bad_json", nil},
		{"JSON null", `null`, "bad_message", nil},
		{"trailing garbage", `{"type":"ping"} x`, "bad_json", nil},
		{"invalid UTF-8", "{\"type\":\"ping\",\"x\":\"\xff\"}", "bad_json", nil},
		{"missing type", `{"id":3}`, "bad_message", float64(3)},
		{"type not a string", `{"id":4,"type":7}`, "bad_message", float64(4)},
		{"id not a number", `{"id":"x","type":"ping"}`, "bad_message", nil},
		{"negative id", `{"id":-1,"type":"ping"}`, "bad_message", nil},
		{"fractional id", `{"id":1.5,"type":"ping"}`, "bad_message", nil},
		{"unknown type", `{"id":5,"type":"explode"}`, "unknown_type", float64(5)},
		{"missing field", `{"id":6,"type":"create","room":"r"}`, "bad_message", float64(6)},
		{"empty field", `{"id":7,"type":"create","room":"","name":"n"}`, "bad_message", float64(7)},
		{"wrong-typed field", `{"id":8,"type":"create","room":1,"name":"n"}`, "bad_message", float64(8)},
		{"unknown field", `{"id":9,"type":"ping","admin":true}`, "bad_message", float64(9)},
		{"oversize field", `{"id":10,"type":"rejoin","room":"r","member":"m","secret":"` + strings.Repeat("s", 200) + `"}`, "bad_message", float64(10)},
		{"lock without locked", `{"id":11,"type":"lock"}`, "bad_message", float64(11)},
		{"negative ttl", `{"id":12,"type":"invite","ttl":-5}`, "bad_message", float64(12)},
		{"signal data not an object", `{"id":13,"type":"signal","to":"m","data":"x"}`, "bad_message", float64(13)},
		{"too many status rooms", `{"id":14,"type":"status","rooms":[` + strings.Repeat(`{"room":"r","member":"m","secret":"s"},`, 100) + `{"room":"r","member":"m","secret":"s"}]}`, "bad_message", float64(14)},
		{"invalid name", `{"id":15,"type":"create","room":"r","name":"\u0000"}`, "invalid_name", float64(15)},
		{"member op outside a room", `{"id":16,"type":"lock","locked":true}`, "not_in_room", float64(16)},
		{"leave outside a room", `{"id":17,"type":"leave"}`, "not_in_room", float64(17)},
		{"rejoin a room that does not exist", `{"id":18,"type":"rejoin","room":"nope","member":"m","secret":"s"}`, "room_not_found", float64(18)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.sendRaw(tt.frame)
			r := c.next()
			if r.str("type") != "error" || r.code() != tt.code {
				t.Fatalf("reply %v, want error %s", r, tt.code)
			}
			if r.obj("error").str("message") == "" {
				t.Fatalf("error without a message: %v", r)
			}
			if r["re"] != tt.re {
				t.Fatalf("re = %v, want %v", r["re"], tt.re)
			}
			c.mustCall("ping", nil)
		})
	}
}

func TestBinaryAndOversizeFramesAreRefusedNotFatal(t *testing.T) {
	ts := startServer(t, "")
	c := dial(t, ts)
	if err := c.conn.Write(c.ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if r := c.next(); r.code() != "binary_frame" {
		t.Fatalf("binary frame: %v", r)
	}
	c.sendRaw(`{"type":"ping","pad":"` + strings.Repeat("x", 64<<10) + `"}`)
	if r := c.next(); r.code() != "too_large" {
		t.Fatalf("oversize frame: %v", r)
	}
	c.mustCall("ping", nil)
}

func TestHugeFrameClosesTheConnection(t *testing.T) {
	ts := startServer(t, "")
	c := dial(t, ts)
	_ = c.conn.Write(c.ctx, websocket.MessageText, []byte(strings.Repeat("x", 64<<10*hardLimitFactor+1)))
	if code := closeStatus(t, c); code != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v, want %v", code, websocket.StatusMessageTooBig)
	}
}

// closeStatus waits for the connection to end and returns its close code.
func closeStatus(t *testing.T, c *client) websocket.StatusCode {
	t.Helper()
	for {
		select {
		case _, ok := <-c.in:
			if ok {
				continue
			}
			return websocket.CloseStatus(<-c.closed)
		case <-time.After(waitTimeout):
			t.Fatal("connection not closed")
		}
	}
}

func TestFloodIsThrottledThenCut(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.Rate, c.Burst = rate.Limit(1), 5 })
	c := dial(t, ts)
	for range 5 {
		c.sendRaw(`{"type":"ping"}`)
	}
	for range 5 {
		if r := c.next(); r.str("type") != "pong" {
			t.Fatalf("within the burst: %v", r)
		}
	}
	c.sendRaw(`{"id":1,"type":"ping"}`)
	if r := c.next(); r.code() != "rate_limited" {
		t.Fatalf("over the rate: %v", r)
	}
	for range maxStrikes {
		_ = c.conn.Write(c.ctx, websocket.MessageText, []byte(`{"type":"ping"}`))
	}
	if code := closeStatus(t, c); code != websocket.StatusPolicyViolation {
		t.Fatalf("close status %v, want policy violation", code)
	}
}

func TestForeignOriginIsRefused(t *testing.T) {
	ts := startServer(t, "", func(c *Config) {
		c.OriginPatterns = []string{"friend.example", "*.Pals.example", "https://secure.example"}
	})
	for _, tt := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{ts.http.URL, true},
		{strings.ToUpper(ts.http.URL), true},
		{"https://friend.example", true},
		{"http://friend.example", true},
		{"https://friend.example:8443", false},
		{"https://a.pals.example", true},
		{"https://pals.example", false},
		{"https://secure.example", true},
		{"http://secure.example", false},
		{"https://evil.example", false},
		{"null", false},
	} {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		conn, resp, err := websocket.Dial(context.Background(), ts.wsURL(), &websocket.DialOptions{HTTPHeader: h})
		if tt.ok != (err == nil) {
			t.Fatalf("origin %q: err %v, want ok=%v", tt.origin, err, tt.ok)
		}
		if err == nil {
			conn.CloseNow()
		} else if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("origin %q: status %d, want 403", tt.origin, resp.StatusCode)
		}
	}
}

func TestConnectionsPerAddressAreCapped(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.MaxConnsPerIP = 2 })
	first := dial(t, ts)
	dial(t, ts)
	_, resp, err := websocket.Dial(context.Background(), ts.wsURL(), nil)
	if err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection: err %v, status %v; want 429", err, resp)
	}
	first.close()
	deadline := time.Now().Add(waitTimeout)
	for {
		conn, _, err := websocket.Dial(context.Background(), ts.wsURL(), nil)
		if err == nil {
			conn.CloseNow()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a slot freed by a closed connection was not reused: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHalfOpenConnectionIsClosedAfterPongTimeout(t *testing.T) {
	// The timeout is short enough to be seen within the test's wait and
	// long enough for live clients to answer on a loaded machine.
	ts := startServer(t, "", func(c *Config) { c.PingInterval, c.PongTimeout = 200*time.Millisecond, time.Second })
	a := dial(t, ts)
	owner := createRoom(a, "r", "Ann")

	// A client that never reads never answers pings.
	conn, _, err := websocket.Dial(context.Background(), ts.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	ctx := context.Background()
	token := invite(a, nil)
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"`+owner.room+`","invite":"`+token+`","name":"Mute"}`)); err != nil {
		t.Fatal(err)
	}
	a.event("member.joined")
	if ev := a.event("member.disconnected"); ev.obj("member").str("name") != "Mute" {
		t.Fatalf("member.disconnected = %v", ev)
	}
}

func TestStoreOutageIsReportedAsUnavailable(t *testing.T) {
	ts := startServer(t, "")
	c := dial(t, ts)
	if err := ts.store.Close(); err != nil {
		t.Fatal(err)
	}
	c.refused("unavailable", "create", map[string]any{"room": "r", "name": "n"})
	c.mustCall("ping", nil)
}
