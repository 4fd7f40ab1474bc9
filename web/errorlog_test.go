package web

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPanicInAHandlerIsLoggedAsAnError(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	panicky := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	s, err := New(Config{PlainHTTP: true, Listen: "127.0.0.1:0"}, panicky, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, s)
	if resp, err := http.Get("http://" + r.Addr().String() + "/ws"); err == nil {
		resp.Body.Close()
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got := logs.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "boom") {
		t.Fatalf("a handler's panic is not logged as an error at the default level:\n%s", got)
	}
}
