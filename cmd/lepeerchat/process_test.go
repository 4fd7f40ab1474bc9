//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	sig "lepeerchat/signal"
)

// Bounds of the waits in the end-to-end tests.
const (
	startTimeout = 15 * time.Second // until the server logs its URL
	exitTimeout  = 10 * time.Second // until a process told to stop is gone
	replyTimeout = 5 * time.Second  // for one WebSocket message
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds the command once (with -race when the tests run with it)
// and returns the executable's path.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "lepeerchat-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "lepeerchat")
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go tool not found: %w", err)
			return
		}
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		// The tests run in the package's folder.
		cmd := exec.Command(goTool, append(args, ".")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// lineLog collects a child's output line by line.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced when a line is added
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		added = true
	}
	if added {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

// snapshot returns the complete lines so far and a channel closed when
// another arrives.
func (l *lineLog) snapshot() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.changed
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n") + string(l.partial)
}

// proc is one running lepeerchat process.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	log     *lineLog
	dataDir string
	exited  chan struct{}
	// url is the address the server reported, set by start.
	url  string
	http *http.Client
}

// launch starts the binary with args and extra environment variables
// ("NAME=value"), without waiting for it to serve. The process is killed
// when the test ends.
func launch(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return launchVia(t, nil, env, args...)
}

// launchVia is launch through a wrapper command that execs the binary
// (such as prlimit), given as its name and arguments.
func launchVia(t *testing.T, wrapper []string, env []string, args ...string) *proc {
	t.Helper()
	bin := binary(t)
	p := &proc{t: t, log: newLineLog(), exited: make(chan struct{})}
	argv := append(append(append([]string(nil), wrapper...), bin), args...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(childEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(exitTimeout):
				t.Errorf("process %d still running after SIGKILL", p.cmd.Process.Pid)
			}
		}
		if p.http != nil {
			p.http.CloseIdleConnections()
		}
		out := p.log.String()
		if strings.Contains(out, "DATA RACE") {
			t.Errorf("the race detector reported a race in process %d", p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", strings.Join(p.cmd.Args, " "), p.cmd.Process.Pid, out)
		}
	})
	return p
}

// childEnv is the test's environment without LEPEERCHAT_ variables, so that
// the caller's settings do not leak into the child. The built-in STUN/TURN
// server of each child listens on a free loopback port, not the shared
// default 3478, so that parallel children do not collide.
func childEnv() []string {
	env := []string{"LEPEERCHAT_TURN_LISTEN=127.0.0.1:0"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEPEERCHAT_") {
			env = append(env, kv)
		}
	}
	if raceEnabled {
		env = append(env, "GORACE=halt_on_error=1")
	}
	return env
}

// start runs a server on a free loopback port with the data folder dataDir
// and waits until it reports its URL.
func start(t *testing.T, dataDir string, env []string, args ...string) *proc {
	t.Helper()
	return startVia(t, nil, dataDir, env, args...)
}

// startVia is start through a wrapper command (see launchVia).
func startVia(t *testing.T, wrapper []string, dataDir string, env []string, args ...string) *proc {
	t.Helper()
	p := launchVia(t, wrapper, env, append([]string{"-listen", "127.0.0.1:0", "-data", dataDir}, args...)...)
	p.dataDir = dataDir
	line := p.waitLog("the running message", startTimeout, func(l string) bool {
		return strings.Contains(l, "lepeerchat is running")
	})
	p.url = logAttr(line, "url")
	if !regexp.MustCompile(`^https?://127\.0\.0\.1:[1-9][0-9]*/$`).MatchString(p.url) {
		t.Fatalf("reported URL %q (in %q) is not a loopback URL with the bound port", p.url, line)
	}
	p.http = p.client(true)
	return p
}

// waitLog returns the first output line for which match is true, failing
// the test if the process exits or the time runs out first.
func (p *proc) waitLog(what string, timeout time.Duration, match func(string) bool) string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		lines, changed := p.log.snapshot()
		for _, l := range lines {
			if match(l) {
				return l
			}
		}
		select {
		case <-changed:
		case <-p.exited:
			// Take the output written just before the exit.
			for _, l := range strings.Split(p.log.String(), "\n") {
				if match(l) {
					return l
				}
			}
			p.t.Fatalf("process exited (%v) before logging %s", p.cmd.ProcessState, what)
		case <-deadline:
			p.t.Fatalf("no %s logged within %v", what, timeout)
		}
	}
}

// logAttr returns the value of attribute key in a log line in either the
// JSON or the text format.
func logAttr(line, key string) string {
	if strings.HasPrefix(line, "{") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return ""
		}
		v, _ := m[key].(string)
		return v
	}
	m := regexp.MustCompile(`(?:^| )` + regexp.QuoteMeta(key) + `=("(?:[^"\\]|\\.)*"|\S*)`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	if v, err := strconv.Unquote(m[1]); err == nil {
		return v
	}
	return m[1]
}

// wait waits for the process to exit and returns its exit code, or -1 if a
// signal ended it.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("process %d did not exit within %v", p.cmd.Process.Pid, timeout)
		return 0
	}
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatalf("send %v: %v", s, err)
	}
}

// client returns an HTTP client for the server: for HTTPS it trusts only
// the self-signed certificate in the data folder. WebSockets need HTTP/1.1,
// so h2 is offered only when asked for.
func (p *proc) client(h2 bool) *http.Client {
	p.t.Helper()
	tr := &http.Transport{ForceAttemptHTTP2: h2}
	if strings.HasPrefix(p.url, "https:") {
		tr.TLSClientConfig = p.tlsConfig()
	}
	return &http.Client{Transport: tr, Timeout: replyTimeout}
}

// tlsConfig trusts only the self-signed certificate in the data folder.
func (p *proc) tlsConfig() *tls.Config {
	p.t.Helper()
	pemData, err := os.ReadFile(filepath.Join(p.dataDir, "cert.pem"))
	if err != nil {
		p.t.Fatalf("read the self-signed certificate: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		p.t.Fatalf("cert.pem holds no certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// get fetches path and returns the response with its body read.
func (p *proc) get(path string) (*http.Response, string) {
	p.t.Helper()
	resp, err := p.http.Get(strings.TrimSuffix(p.url, "/") + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp, string(body)
}

// metric returns the line of the metric name in /metrics.
func (p *proc) metric(name string) string {
	p.t.Helper()
	resp, body := p.get("/metrics")
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("GET /metrics: %s", resp.Status)
	}
	for _, l := range strings.Split(body, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			return l
		}
	}
	p.t.Fatalf("/metrics has no sample of %s:\n%s", name, body)
	return ""
}

// waitMetric waits until the sample line of a metric is want ("name value").
// Metrics are updated just after the replies are sent, so a client may see
// its reply before the metric changes.
func (p *proc) waitMetric(want string, timeout time.Duration) {
	p.t.Helper()
	name := strings.Fields(want)[0]
	deadline := time.Now().Add(timeout)
	for {
		got := p.metric(name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			p.t.Errorf("metrics: %q, want %q within %v", got, want, timeout)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// msg is a server message, decoded loosely.
type msg map[string]any

func (m msg) str(key string) string { s, _ := m[key].(string); return s }

func (m msg) obj(key string) msg { o, _ := m[key].(map[string]any); return o }

func (m msg) list(key string) []msg {
	var out []msg
	l, _ := m[key].([]any)
	for _, v := range l {
		o, _ := v.(map[string]any)
		out = append(out, o)
	}
	return out
}

// wsClient is one WebSocket connection speaking the protocol, as a browser
// on the server's page would.
type wsClient struct {
	t      *testing.T
	conn   *websocket.Conn
	cancel context.CancelFunc
	in     chan msg
	// ended receives the error that ended the read loop (with the close
	// status, if any); in is closed after it.
	ended  chan error
	nextID uint64
	queue  []msg
}

// dial connects to the server's /ws with the page's Origin and reads the
// welcome message.
func (p *proc) dial() *wsClient {
	p.t.Helper()
	t := p.t
	ctx, cancel := context.WithCancel(context.Background())
	origin := strings.TrimSuffix(p.url, "/")
	wsURL := "ws" + strings.TrimPrefix(p.url, "http") + "ws"
	dctx, dcancel := context.WithTimeout(ctx, replyTimeout)
	defer dcancel()
	conn, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{
		HTTPClient:   p.client(false),
		HTTPHeader:   http.Header{"Origin": {origin}},
		Subprotocols: []string{sig.Subprotocol},
	})
	if err != nil {
		cancel()
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != sig.Subprotocol {
		t.Errorf("negotiated subprotocol %q, want %q", got, sig.Subprotocol)
	}
	c := &wsClient{t: t, conn: conn, cancel: cancel, in: make(chan msg, 256), ended: make(chan error, 1)}
	go c.readLoop(ctx)
	t.Cleanup(func() {
		conn.CloseNow()
		cancel()
	})
	if w := c.next(); w.str("type") != "welcome" || w["version"] != float64(sig.Version) {
		t.Fatalf("first message %v, want a welcome for version %d", w, sig.Version)
	}
	return c
}

func (c *wsClient) readLoop(ctx context.Context) {
	for {
		_, data, err := c.conn.Read(ctx)
		if err != nil {
			c.ended <- err
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

// next returns the next message not yet taken.
func (c *wsClient) next() msg {
	c.t.Helper()
	return c.await("a message", func(msg) bool { return true })
}

// await returns the first message matching, keeping the others.
func (c *wsClient) await(what string, match func(msg) bool) msg {
	c.t.Helper()
	for i, m := range c.queue {
		if match(m) {
			c.queue = append(c.queue[:i:i], c.queue[i+1:]...)
			return m
		}
	}
	deadline := time.After(replyTimeout)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				c.t.Fatalf("connection ended while waiting for %s", what)
			}
			if match(m) {
				return m
			}
			c.queue = append(c.queue, m)
		case <-deadline:
			c.t.Fatalf("no %s within %v (other messages: %v)", what, replyTimeout, c.queue)
			return nil
		}
	}
}

// event waits for a pushed message of type typ.
func (c *wsClient) event(typ string) msg {
	c.t.Helper()
	return c.await("event "+typ, func(m msg) bool { return m.str("type") == typ && m["re"] == nil })
}

// call sends a message and returns its reply, which may be an error.
func (c *wsClient) call(typ string, fields map[string]any) msg {
	c.t.Helper()
	c.nextID++
	id := c.nextID
	m := map[string]any{"id": id, "type": typ}
	for k, v := range fields {
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		c.t.Fatalf("marshal: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, data); err != nil {
		c.t.Fatalf("send %s: %v", typ, err)
	}
	return c.await(fmt.Sprintf("reply to %s #%d", typ, id), func(m msg) bool {
		re, ok := m["re"].(float64)
		return ok && uint64(re) == id
	})
}

// mustCall is call, failing the test on an error reply or a reply of
// another type than want.
func (c *wsClient) mustCall(typ string, fields map[string]any, want string) msg {
	c.t.Helper()
	r := c.call(typ, fields)
	if r.str("type") != want {
		c.t.Fatalf("%s: reply %v, want %s", typ, r, want)
	}
	return r
}

// endErr waits for the connection to end and returns why.
func (c *wsClient) endErr(timeout time.Duration) error {
	c.t.Helper()
	select {
	case err := <-c.ended:
		return err
	case <-time.After(timeout):
		c.t.Fatalf("connection still open after %v", timeout)
		return nil
	}
}

// member is a participant's identity as the browser keeps it.
type member struct{ room, id, secret string }

func (m member) creds() map[string]any {
	return map[string]any{"room": m.room, "member": m.id, "secret": m.secret}
}

// createRoom creates a room as c and returns the owner's identity.
func (c *wsClient) createRoom(roomName, user string) member {
	c.t.Helper()
	r := c.mustCall("create", map[string]any{"room": roomName, "name": user}, "joined")
	m := member{room: r.obj("room").str("id"), id: r.obj("self").str("id"), secret: r.obj("self").str("secret")}
	if m.room == "" || m.id == "" || m.secret == "" {
		c.t.Fatalf("create: reply %v lacks the room id, member id or secret", r)
	}
	return m
}

// status asks whether the room of m is alive and returns its entry.
func (c *wsClient) status(m member) msg {
	c.t.Helper()
	r := c.mustCall("status", map[string]any{"rooms": []any{m.creds()}}, "status")
	rooms := r.list("rooms")
	if len(rooms) != 1 || rooms[0].str("room") != m.room {
		c.t.Fatalf("status: reply %v, want one entry for room %s", r, m.room)
	}
	return rooms[0]
}
