package web

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// closeWithin bounds the waits for what the server does at once (answer,
// refuse, close a refused connection), and the steps of a client.
const closeWithin = 10 * time.Second

// A connection the server must close at a configured timeout is waited for
// that timeout plus timeoutMargin (waitClosedBy): generous for a loaded
// machine under -race, yet below readHeaderTimeout, the next timeout that
// would close a stalled header (a stalled body has none before the idle
// timeout), so that a pass proves the configured timeout was applied.
const timeoutMargin = 5 * time.Second

// stallTimeout is the read and write timeout of the tests where a
// legitimate step (a TLS handshake, a WebSocket upgrade) comes under the
// same timeout as the stall being timed out: far above what that step
// takes on a loaded machine, and with timeoutMargin still below
// readHeaderTimeout.
const stallTimeout = 2 * time.Second

// tlsClientConfig trusts only the self-signed certificate of a server whose
// data folder is dir, and offers the given ALPN protocols.
func tlsClientConfig(t *testing.T, dir string, protos ...string) *tls.Config {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in cert.pem")
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: protos}
}

// endpoint is a running server and how to open raw connections to it.
type endpoint struct {
	*running
	dir string // data folder, in TLS mode
}

// dial opens a connection from the loopback address from (empty for the
// default), completing the TLS handshake in TLS mode.
func (e *endpoint) dial(t *testing.T, from string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{Timeout: closeWithin}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", e.Addr().String())
	if err != nil || e.dir == "" {
		return c, err
	}
	tc := tls.Client(c, tlsClientConfig(t, e.dir, "http/1.1"))
	tc.SetDeadline(time.Now().Add(closeWithin))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// mustDial is dial that fails the test on error and closes the connection
// at its end.
func (e *endpoint) mustDial(t *testing.T, from string) net.Conn {
	t.Helper()
	c, err := e.dial(t, from)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startEndpoint runs a server with cfg (a self-signed TLS one unless
// cfg.PlainHTTP) and the given /ws and /metrics handlers.
func startEndpoint(t *testing.T, cfg Config, ws, metrics http.Handler) *endpoint {
	t.Helper()
	e := &endpoint{}
	if !cfg.PlainHTTP {
		e.dir = t.TempDir()
		cfg.DataDir = e.dir
	}
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, ws, metrics, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	e.running = start(t, s)
	return e
}

// roundTrip sends a GET for path on c and reads the response.
func roundTrip(t *testing.T, c net.Conn, path string) *http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(closeWithin))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// waitClosed reads c until the server closes it, failing the test if that
// takes longer than closeWithin: for a connection the server closes at
// once.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	waitClosedWithin(t, c, closeWithin)
}

// waitClosedBy reads c, stalled from now on, until the server closes it,
// failing the test unless that comes within timeout, the timeout that
// must close it, and timeoutMargin.
func waitClosedBy(t *testing.T, c net.Conn, timeout time.Duration) {
	t.Helper()
	if timeout+timeoutMargin >= readHeaderTimeout {
		t.Fatalf("a wait of %v for a timeout of %v cannot tell it from readHeaderTimeout (%v)", timeout+timeoutMargin, timeout, readHeaderTimeout)
	}
	waitClosedWithin(t, c, timeout+timeoutMargin)
}

func waitClosedWithin(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still held the connection after %v", within)
	}
}

// blockingBody is a metrics handler that reads the whole request body, as
// a handler accepting uploads would.
var blockingBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
})

// TestStalledRequestsAreClosedWithinTheTimeouts sends what a stranger
// holding connections would: every such connection is closed within the
// configured read timeout, in plain HTTP and over TLS. The timeout is
// stallTimeout, since it also bounds the TLS handshake; the cases run in
// parallel.
func TestStalledRequestsAreClosedWithinTheTimeouts(t *testing.T) {
	cases := []struct {
		name string
		send string
	}{
		{"body announced and never sent", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"},
		{"body announced to a handler that reads it", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"},
		{"body trickled short", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"},
		{"chunked body never ended", "POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
		{"header never ended", "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "},
		{"request line never ended", "GET /"},
		{"nothing sent", ""},
		{"body announced on the WebSocket path", "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"},
	}
	for _, plain := range []bool{true, false} {
		mode := map[bool]string{true: "plain HTTP", false: "TLS"}[plain]
		e := startEndpoint(t, Config{PlainHTTP: plain, ReadTimeout: stallTimeout, WriteTimeout: stallTimeout},
			marker("ws reached"), blockingBody)
		for _, c := range cases {
			t.Run(mode+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				conn := e.mustDial(t, "")
				if _, err := io.WriteString(conn, c.send); err != nil {
					t.Fatal(err)
				}
				waitClosedBy(t, conn, stallTimeout)
			})
		}
	}
}

// TestTLSHandshakeNeverStartedIsClosed opens a TCP connection to the TLS
// listener and sends no ClientHello, or garbage instead of one.
func TestTLSHandshakeNeverStartedIsClosed(t *testing.T) {
	const timeout = 300 * time.Millisecond // what is timed out is the only step
	e := startEndpoint(t, Config{ReadTimeout: timeout}, nil, nil)
	for name, send := range map[string]string{"nothing": "", "half a record header": "\x16\x03", "plain HTTP": "GET / HTTP/1.1\r\n"} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, send)
			waitClosedBy(t, c, timeout)
		})
	}
}

// TestHTTP2StreamWithStalledBodyIsReset sends an HTTP/2 request whose body
// never comes to a handler that reads it: the stream ends within the read
// timeout (stallTimeout, since it also bounds the TLS handshake) while the
// connection serves other streams.
func TestHTTP2StreamWithStalledBodyIsReset(t *testing.T) {
	e := startEndpoint(t, Config{ReadTimeout: stallTimeout}, nil, blockingBody)
	client := trustingClient(t, filepath.Join(e.dir, "cert.pem"))
	client.Timeout = stallTimeout + timeoutMargin
	body, stall := io.Pipe()
	defer stall.Close()
	resp, err := client.Post(e.URL()+"metrics", "text/plain", body)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the stream was still open after %v", client.Timeout)
	}
	resp, err = client.Get(e.URL() + "healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz after the stalled stream: %v, %v", resp, err)
	}
	resp.Body.Close()
}

// echoWS is a WebSocket handler that echoes every message.
var echoWS = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	echoMessages(context.WithoutCancel(r.Context()), c)
})

// echoMessages sends back every message read on c until reading or
// writing fails.
func echoMessages(ctx context.Context, c *websocket.Conn) {
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// dialWS opens a WebSocket to e's /ws over HTTP/1.1.
func dialWS(t *testing.T, e *endpoint) *websocket.Conn {
	t.Helper()
	tr := &http.Transport{}
	scheme := "ws://"
	if e.dir != "" {
		scheme = "wss://"
		tr.TLSClientConfig = tlsClientConfig(t, e.dir, "http/1.1")
	}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(t.Context(), closeWithin)
	defer cancel()
	c, _, err := websocket.Dial(ctx, scheme+e.Addr().String()+"/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("open a WebSocket: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// echo sends msg on c and checks that it comes back.
func echo(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), closeWithin)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("WebSocket write: %v", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != msg {
		t.Fatalf("WebSocket read: %q, %v; want %q", got, err, msg)
	}
}

// TestWebSocketOutlivesTheTimeouts opens a WebSocket, then waits until a
// stalled request opened after it has been closed by the read timeout: the
// WebSocket, older than both timeouts by then, still carries messages. The
// timeouts are stallTimeout, since they also bound the WebSocket's TLS
// handshake and upgrade.
func TestWebSocketOutlivesTheTimeouts(t *testing.T) {
	for _, plain := range []bool{true, false} {
		t.Run(map[bool]string{true: "plain HTTP", false: "TLS"}[plain], func(t *testing.T) {
			e := startEndpoint(t, Config{PlainHTTP: plain, ReadTimeout: stallTimeout, WriteTimeout: stallTimeout}, echoWS, nil)
			ws := dialWS(t, e)
			echo(t, ws, "before")
			stalled := e.mustDial(t, "")
			io.WriteString(stalled, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
			waitClosedBy(t, stalled, stallTimeout)
			echo(t, ws, "after the timeouts")
		})
	}
}

// TestPerClientCap holds the cap's worth of connections in use from one
// address (each with a request under way, so none is idle), then checks
// the refusals past it, that another address is served, and that closed
// connections free their slots.
func TestPerClientCap(t *testing.T) {
	const limit = 3
	for _, plain := range []bool{true, false} {
		t.Run(map[bool]string{true: "plain HTTP", false: "TLS"}[plain], func(t *testing.T) {
			var refused refusals
			e := startEndpoint(t, Config{PlainHTTP: plain, MaxConnsPerClient: limit, OnRefuse: refused.note}, echoWS, nil)
			var held []net.Conn
			for range limit {
				c := e.mustDial(t, "127.0.0.1")
				if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
			}

			over := e.mustDial(t, "127.0.0.1")
			resp := roundTrip(t, over, "/healthz")
			if resp.StatusCode != http.StatusTooManyRequests || !resp.Close || resp.Header.Get("Retry-After") == "" {
				t.Errorf("past the cap: %s, close %v, Retry-After %q; want 429, closed, with Retry-After",
					resp.Status, resp.Close, resp.Header.Get("Retry-After"))
			}
			if resp.Header.Get("Content-Security-Policy") == "" {
				t.Error("the refusal carries no security headers")
			}
			waitClosed(t, over)
			if got := refused.get(RefusedClient); got != 1 {
				t.Errorf("%d refusals %q told, want 1", got, RefusedClient)
			}

			other := e.mustDial(t, "127.0.0.2")
			if resp := roundTrip(t, other, "/healthz"); resp.StatusCode != http.StatusOK {
				t.Errorf("another address: %s, want 200", resp.Status)
			}

			// A WebSocket is not refused by this cap, and once open it no
			// longer counts against it.
			ws := dialWS(t, e)
			echo(t, ws, "past the HTTP cap")

			for _, c := range held {
				c.Close()
			}
			waitServed(t, e, "127.0.0.1")
		})
	}
}

// TestIdleConnectionsGiveWayAtTheCap holds the cap's worth of kept-alive
// connections idle from one address, as the browsers behind one NAT do:
// a new connection from there is served, in the place of the connection
// idle longest, which is closed; the others still serve.
func TestIdleConnectionsGiveWayAtTheCap(t *testing.T) {
	const limit = 3
	for _, plain := range []bool{true, false} {
		t.Run(map[bool]string{true: "plain HTTP", false: "TLS"}[plain], func(t *testing.T) {
			e := startEndpoint(t, Config{PlainHTTP: plain, MaxConnsPerClient: limit}, nil, nil)
			var held []net.Conn
			for i := range limit {
				c := e.mustDial(t, "127.0.0.1")
				if resp := roundTrip(t, c, "/healthz"); resp.StatusCode != http.StatusOK {
					t.Fatalf("connection within the cap: %s", resp.Status)
				}
				// In order, so that held[0] is the one idle longest.
				waitIdle(t, e, "127.0.0.1", i+1)
				held = append(held, c)
			}
			if resp := roundTrip(t, e.mustDial(t, "127.0.0.1"), "/healthz"); resp.StatusCode != http.StatusOK {
				t.Fatalf("a new connection with the cap's worth idle: %s, want 200", resp.Status)
			}
			waitClosed(t, held[0])
			for _, c := range held[1:] {
				if resp := roundTrip(t, c, "/healthz"); resp.StatusCode != http.StatusOK {
					t.Errorf("a connection idle for less long: %s, want 200", resp.Status)
				}
			}
		})
	}
}

// waitIdle waits until n connections of client are noted idle, as they are
// once net/http has finished their responses (the client reads the
// response a moment before).
func waitIdle(t *testing.T, e *endpoint, client string, n int) {
	t.Helper()
	deadline := time.Now().Add(closeWithin)
	for {
		e.conns.mu.Lock()
		got := len(e.conns.idle[client])
		e.conns.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections of %s idle after %v, want %d", got, client, closeWithin, n)
		}
		runtime.Gosched()
	}
}

// waitServed retries GET /healthz from the address from until it is
// answered 200, as it must be once the server has seen the address's
// connections close; a retry refused with 429 has seen not all of them yet.
func waitServed(t *testing.T, e *endpoint, from string) {
	t.Helper()
	deadline := time.Now().Add(closeWithin)
	for {
		c := e.mustDial(t, from)
		resp := roundTrip(t, c, "/healthz")
		c.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after the held connections closed: %s, want 200", resp.Status)
		}
	}
}

// TestPastTheSlackConnectionsAreClosedBeforeTheHandshake holds the cap and
// its slack from one address over TLS: the next connection from there is
// closed without a TLS handshake, while another address completes one.
func TestPastTheSlackConnectionsAreClosedBeforeTheHandshake(t *testing.T) {
	const limit = 2
	e := startEndpoint(t, Config{MaxConnsPerClient: limit}, nil, nil)
	var refused []net.Conn
	for i := range limit + refusalSlack {
		c := e.mustDial(t, "127.0.0.1")
		if i >= limit {
			refused = append(refused, c)
		}
	}
	if _, err := e.dial(t, "127.0.0.1"); err == nil {
		t.Fatal("a connection past the cap and its slack completed a TLS handshake")
	}
	e.mustDial(t, "127.0.0.2")
	if resp := roundTrip(t, refused[0], "/"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a connection in the slack: %s, want 429", resp.Status)
	}
}

// TestServerWideCap fills the server's cap from two addresses: the next
// connection is refused with 503.
func TestServerWideCap(t *testing.T) {
	var refused refusals
	e := startEndpoint(t, Config{PlainHTTP: true, MaxConns: 2, OnRefuse: refused.note}, nil, nil)
	for _, from := range []string{"127.0.0.1", "127.0.0.2"} {
		if resp := roundTrip(t, e.mustDial(t, from), "/healthz"); resp.StatusCode != http.StatusOK {
			t.Fatalf("within the cap: %s", resp.Status)
		}
	}
	resp := roundTrip(t, e.mustDial(t, "127.0.0.3"), "/healthz")
	if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
		t.Errorf("past the server's cap: %s, close %v; want 503, closed", resp.Status, resp.Close)
	}
	if got := refused.get(RefusedServer); got != 1 {
		t.Errorf("%d refusals %q told, want 1", got, RefusedServer)
	}
}

// TestHTTP2ConnectionPastTheCapIsRefused holds the cap with an HTTP/1.1
// connection in use (a request under way: an idle one would give way),
// then opens an HTTP/2 one from the same address.
func TestHTTP2ConnectionPastTheCapIsRefused(t *testing.T) {
	e := startEndpoint(t, Config{MaxConnsPerClient: 1}, nil, nil)
	if _, err := io.WriteString(e.mustDial(t, ""), "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	client := trustingClient(t, filepath.Join(e.dir, "cert.pem"))
	resp, err := client.Get(e.URL() + "healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("%s %s, want HTTP/2 429", resp.Proto, resp.Status)
	}
}

// TestTrustedProxyCapsRequestsPerForwardedAddress runs behind a trusted
// proxy: connections, all from the proxy's address, are not capped per
// address, but the requests in progress of one forwarded address are (the
// last one in X-Forwarded-For, an IPv6 client by its /64).
func TestTrustedProxyCapsRequestsPerForwardedAddress(t *testing.T) {
	const limit = 2
	entered, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	e := startEndpoint(t, Config{PlainHTTP: true, TrustProxy: true, MaxConnsPerClient: limit}, nil, slow)
	get := func(c net.Conn, path, forwarded string) *http.Response {
		t.Helper()
		c.SetDeadline(time.Now().Add(closeWithin))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: "+forwarded+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		resp.Body.Close()
		return resp
	}

	held := []string{"2001:db8:1:2::1", "198.51.100.1, 2001:db8:1:2:ffff:ffff:ffff:ffff"}
	done := make(chan *http.Response, limit)
	for _, forwarded := range held {
		c := e.mustDial(t, "")
		go func() { done <- get(c, "/metrics", forwarded) }()
		<-entered
	}
	for _, forwarded := range []string{"2001:db8:1:2::3", "2001:db8:1:3::1, 2001:DB8:1:2:0:0:0:9"} {
		if resp := get(e.mustDial(t, ""), "/healthz", forwarded); resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("a third request of the /64, forwarded as %q: %s, want 429", forwarded, resp.Status)
		}
	}
	for _, forwarded := range []string{"2001:db8:1:3::1", "2001:db8:1:2::1, 203.0.113.6", "not an address", " ", "::ffff:203.0.113.7"} {
		if resp := get(e.mustDial(t, ""), "/healthz", forwarded); resp.StatusCode != http.StatusOK {
			t.Errorf("another client, forwarded as %q, over more proxy connections than the cap: %s, want 200", forwarded, resp.Status)
		}
	}
	close(release)
	for range limit {
		if resp := <-done; resp.StatusCode != http.StatusOK {
			t.Errorf("a held request: %s", resp.Status)
		}
	}
	if resp := get(e.mustDial(t, ""), "/healthz", "2001:db8:1:2::3"); resp.StatusCode != http.StatusOK {
		t.Errorf("once its requests ended: %s, want 200", resp.Status)
	}
}

func TestTally(t *testing.T) {
	type step struct {
		give    bool
		client  string
		slack   int
		want    verdict
		counted bool
	}
	cases := []struct {
		name             string
		perClient, total int
		steps            []step
	}{
		{"per client", 2, 10, []step{
			{client: "a", want: admitted, counted: true},
			{client: "a", want: admitted, counted: true},
			{client: "a", slack: 1, want: overClient, counted: true},
			{client: "a", slack: 1, want: overClient, counted: false},
			{client: "b", want: admitted, counted: true},
			{give: true, client: "a"},
			{give: true, client: "a"},
			{client: "a", want: admitted, counted: true},
		}},
		{"server wide", 2, 3, []step{
			{client: "a", want: admitted, counted: true},
			{client: "b", want: admitted, counted: true},
			{client: "c", want: admitted, counted: true},
			{client: "d", slack: 1, want: overTotal, counted: true},
			{client: "e", slack: 1, want: overTotal, counted: false},
			{give: true, client: "d"},
			{give: true, client: "a"},
			{client: "e", want: admitted, counted: true},
		}},
		{"no client counts in the total only", 1, 3, []step{
			{want: admitted, counted: true},
			{want: admitted, counted: true},
			{want: admitted, counted: true},
			{want: overTotal, counted: false},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tl := newTally(c.perClient, c.total)
			for i, s := range c.steps {
				if s.give {
					tl.give(s.client)
					continue
				}
				if v, counted := tl.take(s.client, s.slack); v != s.want || counted != s.counted {
					t.Fatalf("step %d: take(%q, %d) = %v, %v; want %v, %v", i, s.client, s.slack, v, counted, s.want, s.counted)
				}
			}
		})
	}
}

// TestMetricsToken checks the bearer token on /metrics against right,
// wrong and malformed credentials.
func TestMetricsToken(t *testing.T) {
	const token = "s3cret-token"
	s := newServer(t, Config{PlainHTTP: true, MetricsToken: token})
	cases := []struct {
		auth string
		want int
	}{
		{"Bearer " + token, http.StatusOK},
		{"bearer " + token, http.StatusOK},
		{"", http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer " + token + "x", http.StatusUnauthorized},
		{"Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		{"Bearer  " + token, http.StatusUnauthorized},
		{"Basic " + token, http.StatusUnauthorized},
		{token, http.StatusUnauthorized},
		{"Bearer " + strings.Repeat("A", 8000), http.StatusUnauthorized},
		{"Bearer " + token + "\x00", http.StatusUnauthorized},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodGet, "/metrics", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := doRequest(s.Handler(), req)
		if rec.Code != c.want {
			t.Errorf("Authorization %.40q: %d, want %d", c.auth, rec.Code, c.want)
		}
		if c.want == http.StatusOK && rec.Body.String() != "metrics reached" {
			t.Errorf("Authorization %.40q: body %q", c.auth, rec.Body.String())
		}
		if c.want == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %.40q: WWW-Authenticate %q", c.auth, rec.Header().Get("WWW-Authenticate"))
		}
	}
	// The token guards /metrics only.
	if rec := doRequest(s.Handler(), httpRequest("/healthz")); rec.Code != http.StatusOK {
		t.Errorf("/healthz with a metrics token: %d", rec.Code)
	}
}

func httpRequest(path string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	return req
}

// TestMetricsListen serves metrics on their own listener, with and without
// a token: the main listener no longer has them.
func TestMetricsListen(t *testing.T) {
	for _, token := range []string{"", "tok"} {
		t.Run("token "+token, func(t *testing.T) {
			e := startEndpoint(t, Config{PlainHTTP: true, MetricsListen: "127.0.0.1:0", MetricsToken: token}, nil, marker("metrics reached"))
			get := func(url, auth string) (int, string) {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			metricsURL := "http://" + e.MetricsAddr().String()
			auth := ""
			if token != "" {
				auth = "Bearer " + token
				if code, _ := get(metricsURL+"/metrics", ""); code != http.StatusUnauthorized {
					t.Errorf("metrics listener without the token: %d, want 401", code)
				}
			}
			if code, body := get(metricsURL+"/metrics", auth); code != http.StatusOK || body != "metrics reached" {
				t.Errorf("metrics listener /metrics: %d %q", code, body)
			}
			for _, path := range []string{"/", "/healthz", "/ws", "/metrics/x"} {
				if code, _ := get(metricsURL+path, auth); code != http.StatusNotFound {
					t.Errorf("metrics listener %s: %d, want 404", path, code)
				}
			}
			if code, _ := get(e.URL()+"metrics", auth); code != http.StatusNotFound {
				t.Errorf("main listener /metrics: %d, want 404", code)
			}
		})
	}
}

func TestMetricsListenError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := newServer(t, Config{PlainHTTP: true, MetricsListen: busy.Addr().String()})
	if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("Listen with the metrics address busy: %v", err)
	}
	if s.Addr() != nil {
		t.Error("the main listener stayed bound after the metrics one failed")
	}
}

// TestUnreadResponseIsCutAtTheWriteTimeout asks for a response larger than
// the sockets' buffers and does not read it: once a stalled request opened
// afterwards has been closed by the (equal) read timeout, the write timeout
// of the first has passed too, and reading now gets the response cut short.
func TestUnreadResponseIsCutAtTheWriteTimeout(t *testing.T) {
	const size = 64 << 20
	big := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	const timeout = 300 * time.Millisecond // plain HTTP: nothing legitimate comes under it
	e := startEndpoint(t, Config{PlainHTTP: true, ReadTimeout: timeout, WriteTimeout: timeout}, nil, big)
	slow := e.mustDial(t, "")
	io.WriteString(slow, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	stalled := e.mustDial(t, "")
	io.WriteString(stalled, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	waitClosedBy(t, stalled, timeout)

	slow.SetReadDeadline(time.Now().Add(closeWithin))
	n, err := io.Copy(io.Discard, slow)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still held the connection after %v", closeWithin)
	}
	if n >= size {
		t.Errorf("read %d bytes, the whole response: the write timeout did not cut it", n)
	}
}

// TestOversizedHeaderIsRefused sends a header over the 64 KiB limit.
func TestOversizedHeaderIsRefused(t *testing.T) {
	e := startEndpoint(t, Config{PlainHTTP: true}, nil, nil)
	c := e.mustDial(t, "")
	c.SetDeadline(time.Now().Add(closeWithin))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 80<<10)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %s, want 431", resp.Status)
	}
	waitClosed(t, c)
}

// refusals counts what Config.OnRefuse is told, by reason.
type refusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusals) note(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[reason]++
}

func (r *refusals) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// addrConn is one end of a pipe that claims to come from a given address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// oneConnListener hands out one connection, then reports itself closed.
type oneConnListener struct{ conns chan net.Conn }

func (l oneConnListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l oneConnListener) Close() error   { return nil }
func (l oneConnListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestListenerCountsAnIPv6ClientByItsPrefix offers connections from
// addresses of one IPv6 /64 and of others: the /64 shares one cap, and its
// connections past the cap and the slack are closed as they come.
func TestListenerCountsAnIPv6ClientByItsPrefix(t *testing.T) {
	const limit = 2
	conns := newTally(limit, 1000)
	var refused refusals
	// offer has a listener accept a connection from addr and returns it,
	// or nil when the listener closed it instead.
	offer := func(addr string) *limitedConn {
		t.Helper()
		ours, theirs := net.Pipe()
		t.Cleanup(func() { theirs.Close() })
		one := oneConnListener{make(chan net.Conn, 1)}
		one.conns <- addrConn{ours, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))}
		close(one.conns)
		c, err := (&limitedListener{Listener: one, conns: conns, byClient: true, refused: refused.note}).Accept()
		if errors.Is(err, net.ErrClosed) {
			if _, err := theirs.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Fatalf("a refused connection was left open: %v", err)
			}
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*limitedConn)
	}

	prefix := []string{"[2001:db8:1:2::1]:1000", "[2001:db8:1:2:ffff::7]:1001", "[2001:db8:1:2::1]:1002"}
	for i := range limit + refusalSlack {
		want := admitted
		if i >= limit {
			want = overClient
		}
		if c := offer(prefix[i%len(prefix)]); c == nil || c.verdict != want {
			t.Fatalf("connection %d of the /64: %+v; want verdict %v", i, c, want)
		}
	}
	if c := offer("[2001:db8:1:2:abcd::1]:2000"); c != nil {
		t.Error("a connection of the /64 past the cap and the slack was not closed")
	}
	if got := refused.get(RefusedClosed); got != 1 {
		t.Errorf("%d refusals %q told, want 1", got, RefusedClosed)
	}
	for _, other := range []string{"[2001:db8:1:3::1]:1000", "[::ffff:192.0.2.1]:1000", "192.0.2.2:1000"} {
		if c := offer(other); c == nil || c.verdict != admitted {
			t.Errorf("a connection from %s: %+v; want admitted", other, c)
		}
	}
}
