package signal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

func TestHandshakesThatAreNotWebSocketAreRefused(t *testing.T) {
	ts := startServer(t, "")
	good := func() http.Header {
		return http.Header{
			"Connection":            {"keep-alive, Upgrade"},
			"Upgrade":               {"websocket"},
			"Sec-Websocket-Version": {"13"},
			"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
		}
	}
	for _, tt := range []struct {
		name   string
		method string
		change func(http.Header)
		status int
	}{
		{"a POST", http.MethodPost, func(http.Header) {}, http.StatusMethodNotAllowed},
		{"no Upgrade header", http.MethodGet, func(h http.Header) { h.Del("Upgrade") }, http.StatusUpgradeRequired},
		{"no upgrade in Connection", http.MethodGet, func(h http.Header) { h.Set("Connection", "keep-alive") }, http.StatusUpgradeRequired},
		{"an older version", http.MethodGet, func(h http.Header) { h.Set("Sec-Websocket-Version", "8") }, http.StatusBadRequest},
		{"no key", http.MethodGet, func(h http.Header) { h.Del("Sec-Websocket-Key") }, http.StatusBadRequest},
		{"a key of the wrong size", http.MethodGet, func(h http.Header) { h.Set("Sec-Websocket-Key", "c2hvcnQ=") }, http.StatusBadRequest},
		{"a foreign origin", http.MethodGet, func(h http.Header) { h.Set("Origin", "https://evil.example") }, http.StatusForbidden},
		{"an origin that is not a URL", http.MethodGet, func(h http.Header) { h.Set("Origin", "::") }, http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.http.URL+"/ws", nil)
			req.Header = good()
			tt.change(req.Header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || len(body) == 0 {
				t.Fatalf("status %d %q, want %d with a reason", resp.StatusCode, body, tt.status)
			}
			if tt.status != http.StatusForbidden && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Fatalf("%d without the version spoken: %v", tt.status, resp.Header)
			}
		})
	}
	// The refusals took no connection slot.
	dial(t, ts).mustCall("ping", nil)
}

func TestSubprotocolIsChosenOnlyWhenOffered(t *testing.T) {
	ts := startServer(t, "")
	for _, offer := range [][]string{nil, {"other"}, {"other", Subprotocol}} {
		conn, _, err := websocket.Dial(context.Background(), ts.wsURL(), &websocket.DialOptions{Subprotocols: offer})
		if err != nil {
			t.Fatalf("offering %v: %v", offer, err)
		}
		want := ""
		if len(offer) == 2 {
			want = Subprotocol
		}
		if got := conn.Subprotocol(); got != want {
			t.Errorf("offering %v: subprotocol %q, want %q", offer, got, want)
		}
		conn.CloseNow()
	}
}

// rawSocket opens a WebSocket by hand, sending after the handshake's
// request whatever early holds, and returns the connection and a reader
// past the server's answer.
func rawSocket(t *testing.T, ts *testServer, early []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(waitTimeout))
	req := "GET /ws HTTP/1.1\r\nHost: " + conn.RemoteAddr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept %q, not RFC 6455's answer to its example key", got)
	}
	return conn, br
}

// errBadServerFrame is a server frame no server may send here: masked,
// with reserved bits, a control frame over 125 bytes, or a 64-bit length
// (no test makes the server send 64 KiB at once).
var errBadServerFrame = errors.New("malformed server frame")

// readServerFrame reads one server frame, or says why it could not.
func readServerFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	op, size := h[0]&0x0f, int(h[1]&0x7f)
	if h[0]&0x70 != 0 || h[1]&0x80 != 0 || size == 127 || op&0x8 != 0 && size > maxControlPayload {
		return 0, nil, fmt.Errorf("%w: header % x", errBadServerFrame, h)
	}
	if size == 126 {
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, err
		}
		size = int(binary.BigEndian.Uint16(l[:]))
	}
	payload = make([]byte, size)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	return op, payload, nil
}

// serverFrame reads one server frame, failing the test if it cannot.
func serverFrame(t *testing.T, br *bufio.Reader) (op byte, payload []byte) {
	t.Helper()
	op, payload, err := readServerFrame(br)
	if err != nil {
		t.Fatalf("read a frame: %v", err)
	}
	return op, payload
}

// untilServerFrame reads server frames until one has opcode op.
func untilServerFrame(t *testing.T, br *bufio.Reader, op byte) []byte {
	t.Helper()
	for {
		if got, p := serverFrame(t, br); got == op {
			return p
		}
	}
}

func TestFramesSentWithTheHandshakeAreNotLost(t *testing.T) {
	ts := startServer(t, "")
	_, br := rawSocket(t, ts, clientFrame(finBit|opText, []byte(`{"id":7,"type":"ping"}`), 0x12345678))
	if _, p := serverFrame(t, br); !bytes.Contains(p, []byte(`"welcome"`)) {
		t.Fatalf("first message %s, want the welcome", p)
	}
	if _, p := serverFrame(t, br); !bytes.Contains(p, []byte(`"re":7`)) {
		t.Fatalf("answer %s, want the early ping's", p)
	}
}

func TestControlFramesAndBreachesOnTheWire(t *testing.T) {
	ts := startServer(t, "")
	t.Run("a ping is answered with its payload", func(t *testing.T) {
		conn, br := rawSocket(t, ts, nil)
		conn.Write(clientFrame(finBit|opPing, []byte("hello?"), 9))
		if p := untilServerFrame(t, br, opPong); string(p) != "hello?" {
			t.Fatalf("pong %q", p)
		}
	})
	t.Run("a close is answered with its code, then the connection ends", func(t *testing.T) {
		conn, br := rawSocket(t, ts, nil)
		conn.Write(clientFrame(finBit|opClose, []byte{0x0f, 0xa0, 'b', 'y', 'e'}, 9)) // 4000
		if p := untilServerFrame(t, br, opClose); !bytes.Equal(p, []byte{0x0f, 0xa0}) {
			t.Fatalf("close answered with % x", p)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the close: %v, want the end of the stream", err)
		}
	})
	t.Run("a close with no code is answered with none", func(t *testing.T) {
		conn, br := rawSocket(t, ts, nil)
		conn.Write(clientFrame(finBit|opClose, nil, 9))
		if p := untilServerFrame(t, br, opClose); len(p) != 0 {
			t.Fatalf("close answered with % x", p)
		}
	})
	t.Run("an unmasked frame ends the connection with a protocol error", func(t *testing.T) {
		conn, br := rawSocket(t, ts, nil)
		conn.Write([]byte{finBit | opText, 2, '{', '}'})
		p := untilServerFrame(t, br, opClose)
		if code, reason := closePayload(p); code != closeProtocolError || reason == "" {
			t.Fatalf("closed with %d %q, want %d and a reason", code, reason, closeProtocolError)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the close: %v, want the end of the stream", err)
		}
	})
	t.Run("a client that does not answer the close frame is cut", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits for closeWait")
		}
		conn, br := rawSocket(t, ts, nil)
		conn.SetDeadline(time.Now().Add(closeWait + waitTimeout))
		serverFrame(t, br) // the welcome
		sessionOfConn(t, ts, conn).close(closeGoingAway, "test")
		untilServerFrame(t, br, opClose)
		start := time.Now()
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the close: %v, want the end of the stream", err)
		}
		if waited := time.Since(start); waited < closeWait/2 {
			t.Fatalf("cut after %v, before the client had closeWait to answer", waited)
		}
	})
}

// sessionOfConn finds the session of the client end conn.
func sessionOfConn(t *testing.T, ts *testServer, conn net.Conn) *session {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		ts.srv.mu.Lock()
		for s := range ts.srv.sessions {
			if s.wire.RemoteAddr().String() == conn.LocalAddr().String() {
				ts.srv.mu.Unlock()
				return s
			}
		}
		ts.srv.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no session for the connection")
	return nil
}

func TestSessionEndsAtOnceWhenItsClientDrops(t *testing.T) {
	// However the client's socket goes, the session sees the end of the
	// stream at its next read and ends, without waiting for its idle
	// deadline or its next ping (both a minute away here): a FIN that
	// comes in one segment with the last frame, a reset after a frame
	// whose answer cannot be written, a reset while idle; on a session
	// waiting on its goroutine and on one parked in the poller.
	cork := func(conn net.Conn) {
		raw, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1) })
	}
	reset := func(conn net.Conn) { conn.(*net.TCPConn).SetLinger(0) }
	drops := []struct {
		name   string
		before func(net.Conn)
		last   []byte
	}{
		{"last frame and FIN in one segment", cork, clientFrame(finBit|opPong, nil, 0x01020304)},
		{"reset after a ping", reset, clientFrame(finBit|opPing, []byte("x"), 0x01020304)},
		{"reset while idle", reset, nil},
	}
	for _, idleAfter := range []time.Duration{time.Minute, time.Millisecond} {
		for _, d := range drops {
			t.Run(fmt.Sprintf("%s, idle after %v", d.name, idleAfter), func(t *testing.T) {
				ts := startServer(t, "", func(c *Config) { c.IdleAfter, c.PingInterval = idleAfter, time.Minute })
				conn, br := rawSocket(t, ts, nil)
				serverFrame(t, br) // welcome
				sessions := func() (n int, parked bool) {
					ts.srv.mu.Lock()
					defer ts.srv.mu.Unlock()
					for s := range ts.srv.sessions {
						parked = parked || s.parked.Load()
					}
					return len(ts.srv.sessions), parked
				}
				if idleAfter == time.Millisecond {
					waitFor(t, "the session parks", func() bool { _, parked := sessions(); return parked })
				}
				d.before(conn)
				if _, err := conn.Write(d.last); err != nil {
					t.Fatal(err)
				}
				conn.Close()
				waitFor(t, "the session ends", func() bool { n, _ := sessions(); return n == 0 })
			})
		}
	}
}

func TestSessionsWorkOverTLS(t *testing.T) {
	// Over TLS the socket's readiness says nothing of whole records: the
	// session reads through the TLS connection, holding a chunk as it
	// waits.
	ts := startServer(t, "")
	tlsServer := httptest.NewTLSServer(ts.srv)
	defer tlsServer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(tlsServer.URL, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: tlsServer.Client(), Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	// A message larger than a read chunk, then a small one.
	pad := strings.Repeat("x", 3*readChunk)
	for _, m := range []string{`{"id":1,"type":"ping","pad":"` + pad + `"}`, `{"id":2,"type":"ping"}`} {
		if err := conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for want := 1; want <= 2; {
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for the answer to %d: %v", want, err)
		}
		if bytes.Contains(data, fmt.Appendf(nil, `"re":%d`, want)) {
			want++
		}
	}
	if err := conn.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("closing handshake: %v", err)
	}
}

func TestPingsGoOnWhileTheClientAnswers(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.PingInterval, c.PongTimeout = 20*time.Millisecond, 300*time.Millisecond })
	conn, br := rawSocket(t, ts, nil)
	// Each ping is answered late, but within PongTimeout: the pings go
	// on, well past the timeout, and the connection stays.
	for i := range 6 {
		p := untilServerFrame(t, br, opPing)
		time.Sleep(100 * time.Millisecond)
		if _, err := conn.Write(clientFrame(finBit|opPong, p, uint32(i))); err != nil {
			t.Fatalf("pong %d: %v", i, err)
		}
	}
	conn.Write(clientFrame(finBit|opText, []byte(`{"id":1,"type":"ping"}`), 1))
	for {
		if op, p := serverFrame(t, br); op == opText && bytes.Contains(p, []byte(`"re":1`)) {
			break
		} else if op == opClose {
			t.Fatalf("closed: %q", p)
		}
	}
}

func TestPingsCountAgainstTheRate(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.Rate, c.Burst = rate.Limit(1), 5 })
	conn, br := rawSocket(t, ts, nil)
	serverFrame(t, br) // the welcome
	for i := range 5 {
		conn.Write(clientFrame(finBit|opPing, []byte{byte(i)}, 3))
		if p := untilServerFrame(t, br, opPong); !bytes.Equal(p, []byte{byte(i)}) {
			t.Fatalf("pong %d carried % x", i, p)
		}
	}
	conn.Write(clientFrame(finBit|opPing, []byte("over"), 3))
	if op, p := serverFrame(t, br); op != opText || !bytes.Contains(p, []byte(`"rate_limited"`)) {
		t.Fatalf("a ping over the rate got %x %q, want the rate_limited error", op, p)
	}
	for range maxStrikes {
		conn.Write(clientFrame(finBit|opPing, nil, 3))
	}
	if code, _ := closePayload(untilServerFrame(t, br, opClose)); code != closePolicyViolation {
		t.Fatalf("a ping flood closed with %d, want %d", code, closePolicyViolation)
	}
}

func TestClientThatNeverReadsItsPongsIsCutWithWholeFrames(t *testing.T) {
	ts := startServer(t, "", func(c *Config) {
		c.Rate, c.Burst = 1e9, 1e9
		c.WriteTimeout = 200 * time.Millisecond
	})
	conn, br := rawSocket(t, ts, nil)
	payload := bytes.Repeat([]byte{'x'}, maxControlPayload)
	var batch []byte
	for range 1000 {
		batch = append(batch, clientFrame(finBit|opPing, payload, 7)...)
	}
	// Ping without reading until the server stops taking them: its pong
	// writes time out, and it hangs up.
	conn.SetDeadline(time.Now().Add(waitTimeout))
	for {
		if _, err := conn.Write(batch); err != nil {
			break
		}
	}
	// What did arrive is whole frames up to the end: no pong cut short
	// with another frame after it.
	conn.SetDeadline(time.Now().Add(waitTimeout))
	for frames := 0; ; frames++ {
		op, p, err := readServerFrame(br)
		if errors.Is(err, errBadServerFrame) {
			t.Fatalf("frame %d: %v: the stream is corrupt", frames, err)
		}
		if err != nil {
			break // the end, possibly inside the last frame
		}
		if op == opPong && !bytes.Equal(p, payload) {
			t.Fatalf("frame %d: a pong carrying % x…", frames, p[:min(8, len(p))])
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		ts.srv.mu.Lock()
		open := len(ts.srv.sessions)
		ts.srv.mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session lives on after its writes failed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
