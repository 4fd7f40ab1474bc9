//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestSelfSignedDefault starts the binary in its default mode: HTTPS with
// a self-signed certificate kept in a data folder it creates.
func TestSelfSignedDefault(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "not", "yet", "there")
	p := start(t, dataDir, nil) // default log format: text

	if !strings.HasPrefix(p.url, "https://127.0.0.1:") {
		t.Errorf("URL %q, want https on the loopback address", p.url)
	}
	if line := p.waitLog("mode", time.Second, func(l string) bool { return strings.Contains(l, "lepeerchat is running") }); logAttr(line, "mode") != "self-signed" {
		t.Errorf("running line %q does not report mode self-signed", line)
	}
	fi, err := os.Stat(dataDir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("data folder not created: %v", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("data folder mode %v, want no access for group and others", perm)
	}
	for _, name := range []string{"cert.pem", "key.pem", "rooms.db"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Errorf("data folder lacks %s: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "key.pem")); err == nil && fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("key.pem mode %v, want private", fi.Mode().Perm())
	}

	// The client trusts only cert.pem: these requests prove the server
	// uses the certificate it stored.
	resp, body := p.get("/healthz")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("GET /healthz: %s %q", resp.Status, body)
	}
	if resp.TLS == nil {
		t.Errorf("GET /healthz was not served over TLS")
	}

	resp, body = p.get("/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET / Content-Type %q, want text/html", ct)
	}
	if !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("GET / body is not the HTML page: %.200q", body)
	}
	for header, want := range map[string]string{
		"Content-Security-Policy":   "default-src 'self'",
		"Strict-Transport-Security": "max-age=",
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"Referrer-Policy":           "no-referrer",
		"Permissions-Policy":        "camera=(self)",
	} {
		if got := resp.Header.Get(header); !strings.Contains(got, want) {
			t.Errorf("GET / header %s = %q, want it to contain %q", header, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline or eval'd code: %q", csp)
	}

	if got := p.metric("lepeerchat_rooms"); got != "lepeerchat_rooms 0" {
		t.Errorf("metrics: %q, want lepeerchat_rooms 0", got)
	}
	if got := p.metric("lepeerchat_turn_allocations"); got != "lepeerchat_turn_allocations 0" {
		t.Errorf("metrics: %q, want lepeerchat_turn_allocations 0", got)
	}
	c := p.dial()
	c.createRoom("Metrics", "Mia")
	p.waitMetric("lepeerchat_rooms 1", replyTimeout)
}

// TestKillNineLosesNothing checks that a room, its members and its
// invitations survive the process being killed without warning.
func TestKillNineLosesNothing(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p1 := start(t, dataDir, nil, "-log-format", "json")
	certBefore, err := os.ReadFile(filepath.Join(dataDir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}

	alice := p1.dial()
	owner := alice.createRoom("Book club", "Alice")
	token := alice.mustCall("invite", map[string]any{"ttl": 3600}, "invite").obj("invite").str("token")
	if token == "" {
		t.Fatal("invite reply has no token")
	}

	p1.signal(syscall.SIGKILL)
	p1.wait(exitTimeout)
	if ws, ok := p1.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("first process ended with %v, want killed by SIGKILL", p1.cmd.ProcessState)
	}

	p2 := start(t, dataDir, nil, "-log-format", "json")
	certAfter, err := os.ReadFile(filepath.Join(dataDir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(certBefore, certAfter) {
		t.Errorf("the self-signed certificate was replaced on restart")
	}
	if got := p2.metric("lepeerchat_rooms"); got != "lepeerchat_rooms 1" {
		t.Errorf("metrics after restart: %q, want lepeerchat_rooms 1", got)
	}

	// A wrong secret is still refused.
	thief := p2.dial()
	bad := owner
	bad.secret = strings.Repeat("A", len(owner.secret))
	if r := thief.call("rejoin", bad.creds()); r.str("type") != "error" {
		t.Errorf("rejoin with a wrong secret: %v, want an error", r)
	}

	alice2 := p2.dial()
	j := alice2.mustCall("rejoin", owner.creds(), "joined")
	if got := j.obj("room").str("name"); got != "Book club" {
		t.Errorf("room name after restart %q, want %q", got, "Book club")
	}
	if got := j.obj("room").str("id"); got != owner.room {
		t.Errorf("room id after restart %q, want %q", got, owner.room)
	}
	if got := j.obj("room").str("owner"); got != owner.id {
		t.Errorf("room owner after restart %q, want %q", got, owner.id)
	}
	if self := j.obj("self"); self.str("id") != owner.id || self.str("name") != "Alice" || self.str("secret") != "" {
		t.Errorf("self after rejoin %v, want Alice's id and no secret", self)
	}

	guest := p2.dial()
	inv := guest.mustCall("invitation", map[string]any{"room": owner.room, "invite": token}, "invitation")
	if got := inv.obj("room").str("name"); got != "Book club" {
		t.Errorf("invitation names room %q, want %q", got, "Book club")
	}
	g := guest.mustCall("join", map[string]any{"room": owner.room, "invite": token, "name": "Bob"}, "joined")
	names := map[string]bool{}
	for _, m := range g.obj("room").list("members") {
		names[m.str("name")] = true
	}
	if !names["Alice"] || !names["Bob"] || len(names) != 2 {
		t.Errorf("members seen by the guest: %v, want Alice and Bob", names)
	}
	if ev := alice2.event("member.joined"); ev.obj("member").str("name") != "Bob" {
		t.Errorf("owner told %v, want Bob joined", ev)
	}
}

// TestSIGTERMGracefulShutdown checks that SIGTERM closes WebSockets with
// "going away", exits cleanly, and leaves the room to its discard clock.
func TestSIGTERMGracefulShutdown(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	// Set by variable, to check the environment reaches the binary. Long
	// enough for the restart below, short enough to see the room go.
	const discard = 4 * time.Second
	env := []string{"LEPEERCHAT_DISCARD_AFTER=" + discard.String(), "LEPEERCHAT_LOG_FORMAT=json"}
	p1 := start(t, dataDir, env)
	if !strings.HasPrefix(p1.log.String(), "{") {
		t.Errorf("LEPEERCHAT_LOG_FORMAT=json not applied: %q", p1.log.String())
	}

	alice := p1.dial()
	owner := alice.createRoom("Tea", "Alice")

	p1.signal(syscall.SIGTERM)
	stopped := time.Now()
	err := alice.endErr(exitTimeout)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Errorf("connection ended with %v (status %v), want status %v", err, got, websocket.StatusGoingAway)
	}
	if code := p1.wait(exitTimeout); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	p1.waitLog("shutting down", time.Second, func(l string) bool { return strings.Contains(l, `"shutting down"`) })
	for _, l := range strings.Split(p1.log.String(), "\n") {
		var rec struct{ Level string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Level == "ERROR" {
			t.Errorf("error logged during shutdown: %s", l)
		}
	}

	p2 := start(t, dataDir, env)
	c := p2.dial()
	st := c.status(owner)
	if st["alive"] != true || st.str("name") != "Tea" || st.str("self") != "Alice" {
		t.Fatalf("status after restart %v, want room Tea alive with Alice", st)
	}
	if online, _ := st["online"].(float64); online != 0 {
		t.Errorf("status after restart reports %v online, want none", online)
	}

	// The discard clock kept running: the room goes once the delay has
	// passed since the last connection ended, without anyone doing
	// anything.
	deadline := time.Now().Add(discard + exitTimeout)
	for st["alive"] == true {
		if time.Now().After(deadline) {
			t.Fatalf("room still alive %v after shutdown, discard delay %v", time.Since(stopped), discard)
		}
		time.Sleep(200 * time.Millisecond)
		st = c.status(owner)
	}
	if d := time.Since(stopped); d < discard-500*time.Millisecond {
		t.Errorf("room discarded %v after shutdown, before the discard delay %v", d, discard)
	}
	p2.waitMetric("lepeerchat_rooms 0", replyTimeout)
}

// TestPlainHTTP checks the mode for running behind a TLS-terminating proxy.
func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := start(t, dataDir, nil, "-http", "-log-format", "json")
	if !strings.HasPrefix(p.url, "http://127.0.0.1:") {
		t.Fatalf("URL %q, want plain http", p.url)
	}
	warn := p.waitLog("a TLS warning", time.Second, func(l string) bool {
		var rec struct{ Level, Msg string }
		return json.Unmarshal([]byte(l), &rec) == nil && rec.Level == "WARN" && strings.Contains(rec.Msg, "TLS")
	})
	if !strings.Contains(warn, "proxy") {
		t.Errorf("warning %q does not mention the proxy", warn)
	}
	resp, body := p.get("/healthz")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"ok"`) || resp.TLS != nil {
		t.Errorf("GET /healthz: %s %q", resp.Status, body)
	}
	resp, _ = p.get("/")
	if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET / lacks the security headers: %v", resp.Header)
	}
	if hsts := resp.Header.Get("Strict-Transport-Security"); hsts != "" {
		t.Errorf("plain HTTP sends HSTS %q; that is the proxy's call", hsts)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "cert.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plain HTTP mode created a certificate (stat: %v)", err)
	}
	c := p.dial()
	c.mustCall("ping", nil, "pong")
}

// TestSecondProcessOnSameDataFails checks that a second server on the same
// data folder gives up with a clear error instead of hanging.
func TestSecondProcessOnSameDataFails(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p1 := start(t, dataDir, nil)

	began := time.Now()
	p2 := launch(t, nil, "-listen", "127.0.0.1:0", "-data", dataDir)
	if code := p2.wait(exitTimeout); code != 1 {
		t.Errorf("second process exit status %d, want 1", code)
	}
	t.Logf("second process gave up after %v", time.Since(began).Round(10*time.Millisecond))
	out := p2.log.String()
	for _, want := range []string{"lepeerchat:", "rooms.db", "locked", "another running server"} {
		if !strings.Contains(out, want) {
			t.Errorf("second process output does not mention %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "lepeerchat is running") {
		t.Errorf("second process claimed to run:\n%s", out)
	}

	// The first one is unharmed.
	if resp, _ := p1.get("/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("first process /healthz: %s", resp.Status)
	}
	p1.dial().createRoom("Still here", "Ann")
}

// TestBinaryCommandLine checks the exit status and output of -h and of a
// bad command line, which must fail before touching the data folder.
func TestBinaryCommandLine(t *testing.T) {
	t.Parallel()
	p := launch(t, nil, "-h")
	if code := p.wait(exitTimeout); code != 0 {
		t.Errorf("-h: exit status %d, want 0", code)
	}
	checkUsage(t, p.log.String())

	dataDir := filepath.Join(t.TempDir(), "data")
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"-data", dataDir, "-rate", "-1"}, nil, "-rate"},
		{[]string{"-data", dataDir, "serve"}, nil, `unexpected argument "serve"`},
		{[]string{"-data", dataDir}, []string{"LEPEERCHAT_BURST=lots"}, "LEPEERCHAT_BURST"},
		{[]string{"-data", dataDir, "-log-level", "loud"}, nil, "-log-level"},
	} {
		p := launch(t, tc.env, tc.args...)
		if code := p.wait(exitTimeout); code != 1 {
			t.Errorf("%v %v: exit status %d, want 1", tc.env, tc.args, code)
		}
		if out := p.log.String(); !strings.Contains(out, "lepeerchat: ") || !strings.Contains(out, tc.want) {
			t.Errorf("%v %v: output does not name %q:\n%s", tc.env, tc.args, tc.want, out)
		}
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a bad command line created the data folder (stat: %v)", err)
	}
}
