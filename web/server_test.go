package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func itoa(i int) string { return strconv.Itoa(i) }

// doRequest sends req through h.
func doRequest(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"cert without key", Config{CertFile: "c.pem"}, "both"},
		{"key without cert", Config{KeyFile: "k.pem"}, "both"},
		{"files and ACME", Config{CertFile: "c", KeyFile: "k", ACMEDomains: []string{"a.example.org"}, DataDir: "d"}, "not both"},
		{"plain and files", Config{PlainHTTP: true, CertFile: "c", KeyFile: "k"}, "plain HTTP"},
		{"plain and ACME", Config{PlainHTTP: true, ACMEDomains: []string{"a.example.org"}, DataDir: "d"}, "plain HTTP"},
		{"ACME without data folder", Config{ACMEDomains: []string{"a.example.org"}}, "data folder"},
		{"ACME with an empty domain", Config{ACMEDomains: []string{" "}, DataDir: "d"}, "invalid ACME domain"},
		{"ACME with a URL", Config{ACMEDomains: []string{"https://a.example.org"}, DataDir: "d"}, "invalid ACME domain"},
		{"self-signed without data folder", Config{}, "data folder"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg, nil, nil, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	s, err := New(Config{PlainHTTP: true}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Listen != ":8443" || s.cfg.ACMEHTTPListen != ":80" || s.cfg.ShutdownTimeout != 10*time.Second {
		t.Errorf("defaults: %+v", s.cfg)
	}
	if s.Addr() != nil {
		t.Errorf("Addr before Listen = %v, want nil", s.Addr())
	}
}

func TestURL(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{PlainHTTP: true}, "http://localhost:8443/"},
		{Config{PlainHTTP: true, Listen: ":80"}, "http://localhost/"},
		{Config{PlainHTTP: true, Listen: "0.0.0.0:8080"}, "http://localhost:8080/"},
		{Config{PlainHTTP: true, Listen: "[::]:8080"}, "http://localhost:8080/"},
		{Config{PlainHTTP: true, Listen: "192.168.1.20:8080"}, "http://192.168.1.20:8080/"},
		{Config{PlainHTTP: true, Listen: "[2001:db8::1]:8080"}, "http://[2001:db8::1]:8080/"},
		{Config{PlainHTTP: true, Listen: "[2001:db8::1]:80"}, "http://[2001:db8::1]/"},
		{Config{DataDir: "D", Listen: ":443"}, "https://localhost/"},
		{Config{DataDir: "D", Listen: "box.lan:8443"}, "https://box.lan:8443/"},
		{Config{DataDir: "D", ACMEDomains: []string{"chat.example.org"}, Listen: ":8443"}, "https://chat.example.org:8443/"},
	}
	for _, c := range cases {
		if c.cfg.DataDir == "D" {
			c.cfg.DataDir = t.TempDir()
		}
		s, err := New(c.cfg, nil, nil, nil)
		if err != nil {
			t.Fatalf("New(%+v): %v", c.cfg, err)
		}
		if got := s.URL(); got != c.want {
			t.Errorf("URL for listen %q = %q, want %q", c.cfg.Listen, got, c.want)
		}
	}
}

func TestURLUsesBoundPort(t *testing.T) {
	s := newServer(t, Config{PlainHTTP: true})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	if err := s.Listen(); err != nil { // idempotent
		t.Fatalf("second Listen: %v", err)
	}
	port := s.Addr().(*net.TCPAddr).Port
	if port == 0 {
		t.Fatal("port 0 after Listen")
	}
	if want := fmt.Sprintf("http://127.0.0.1:%d/", port); s.URL() != want {
		t.Errorf("URL = %q, want %q", s.URL(), want)
	}
}

func TestListenError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := newServer(t, Config{PlainHTTP: true, Listen: busy.Addr().String()})
	if err := s.Run(t.Context()); err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("Run on a busy port: %v, want an error naming the address", err)
	}
}

// TestGracefulShutdown cancels Run's context while a request is in flight:
// the request must complete, Run must wait for it and return nil, and the
// listener must be closed.
func TestGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	})
	s, err := New(Config{PlainHTTP: true, Listen: "127.0.0.1:0"}, nil, slow, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, s)
	addr := srv.Addr().String()

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-entered

	stopped := make(chan error, 1)
	go func() { stopped <- srv.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("listener still accepts connections after shutdown")
	}
}

// TestShutdownEndsWebSockets checks that a hijacked /ws connection sees its
// request context cancelled when shutdown starts, and that Run waits for its
// handler to return.
func TestShutdownEndsWebSockets(t *testing.T) {
	var handlerDone atomic.Bool
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack through the middleware: %v", err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		buf.Flush()
		<-r.Context().Done()
		time.Sleep(100 * time.Millisecond) // a closing handshake
		handlerDone.Store(true)
	})
	// Also check the direct type assertion that WebSocket libraries use.
	asserting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Hijacker); !ok {
			t.Errorf("the ResponseWriter given to /ws is not an http.Hijacker")
		}
		ws(w, r)
	})
	s, err := New(Config{PlainHTTP: true, Listen: "127.0.0.1:0"}, asserting, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, s)
	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, "101") {
		t.Fatalf("upgrade: %q, %v", status, err)
	}
	if err := srv.stop(); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if !handlerDone.Load() {
		t.Errorf("Run returned before the WebSocket handler finished")
	}
}

func TestShutdownTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{})
	stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	s, err := New(Config{PlainHTTP: true, Listen: "127.0.0.1:0", ShutdownTimeout: 200 * time.Millisecond}, nil, stuck, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	go http.Get("http://" + s.Addr().String() + "/metrics")
	<-entered
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "shutdown") {
			t.Errorf("Run = %v, want a shutdown timeout error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not give up after the shutdown timeout")
	}
}

func TestRunTwice(t *testing.T) {
	srv := start(t, newServer(t, Config{PlainHTTP: true}))
	resp, err := http.Get(srv.URL() + "healthz") // Run has begun once it answers
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := srv.Run(ctx); err == nil {
		t.Errorf("second Run succeeded")
	}
}
