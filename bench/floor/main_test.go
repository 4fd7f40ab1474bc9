//go:build linux

package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestFloorForwardsToTheNamedPeer drives the floor as the load generator
// does (PeerJS's wire format) and checks that what it relays arrives
// whole at the peer it names, and nowhere else.
func TestFloorForwardsToTheNamedPeer(t *testing.T) {
	ls, port, err := listen(0)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() { done <- serve(ls, &stop) }()
	t.Cleanup(func() {
		stop.Store(true)
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(id string) *websocket.Conn {
		t.Helper()
		c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/peerjs?key=peerjs&id=%s&token=t", port, id), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		c.SetReadLimit(1 << 20)
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != `{"type":"OPEN"}` {
			t.Fatalf("%s: got %q, %v; want OPEN", id, msg, err)
		}
		return c
	}
	ann, bob := dial("ann"), dial("bob")
	offer := `{"type":"OFFER","dst":"bob","payload":{"sdp":"v=0"}}`
	// Many pieces per read, and one message over several reads.
	big := `{"type":"OFFER","dst":"ann","payload":{"pad":"` + strings.Repeat("x", 200000) + `"}}`
	for _, c := range []struct {
		from, to *websocket.Conn
		sent     []string
		want     string
	}{
		{ann, bob, []string{`{"type":"HEARTBEAT"}`, `{"type":"OFFER","dst":"nobody","payload":{}}`, offer}, offer},
		{bob, ann, []string{big}, big},
	} {
		for _, m := range c.sent {
			if err := c.from.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		_, got, err := c.to.Read(ctx)
		if err != nil || string(got) != c.want {
			t.Fatalf("got %d bytes (%.60q), %v; want %d bytes (%.60q)", len(got), got, err, len(c.want), c.want)
		}
	}
}
