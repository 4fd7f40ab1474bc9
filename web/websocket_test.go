package web

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestRealWebSocket upgrades /ws with the WebSocket library of package
// signal, over TLS with HTTP/2 enabled, through the logging and header
// middleware, then checks that shutdown closes the session from the server
// side and that Run waits for it.
func TestRealWebSocket(t *testing.T) {
	closed := make(chan websocket.StatusCode, 1)
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		defer c.CloseNow()
		// Reading with r.Context() would make the library drop the
		// connection without a close frame when shutdown cancels it; a
		// clean close is sent from an AfterFunc instead.
		stop := context.AfterFunc(r.Context(), func() {
			c.Close(websocket.StatusGoingAway, "server shutting down")
		})
		defer stop()
		echoMessages(context.WithoutCancel(r.Context()), c)
	})
	dir := t.TempDir()
	s, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0"}, ws, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, s)
	client := trustingClient(t, filepath.Join(dir, "cert.pem"))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	wsURL := "wss://" + strings.TrimPrefix(srv.URL(), "https://") + "ws?token=x"
	c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.CloseNow()
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("no security headers on the upgrade response")
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "ping" {
		t.Fatalf("echo: %q, %v", msg, err)
	}

	go func() {
		_, _, err := c.Read(ctx)
		closed <- websocket.CloseStatus(err)
	}()
	if err := srv.stop(); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	select {
	case code := <-closed:
		if code != websocket.StatusGoingAway {
			t.Errorf("close status %v, want going away", code)
		}
	case <-ctx.Done():
		t.Fatal(errors.New("the client was not disconnected by the shutdown"))
	}
}
