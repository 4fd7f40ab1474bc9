//go:build unix

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The connection test of the room page ("Test my connection"), against the
// real binary with its built-in STUN/TURN server on loopback, without it,
// and with a TURN server nobody answers at.

// connTestOutcome is the outcome the connection test shows, once it shows
// one ("" while none, "running" while it runs).
const connTestOutcome = `(document.querySelector("#conn-test-result")?.dataset.outcome ?? "")`

// connTestPCsClosed is true when the page made peer connections and every
// one is closed (the room has nobody else, so the call makes none).
const connTestPCsClosed = `__probe.pcs.length > 0 && __probe.pcs.every((pc) => pc.connectionState === "closed" && pc.signalingState === "closed")`

func TestConnectionTest(t *testing.T) {
	bin := buildServer(t)

	t.Run("relay works", func(t *testing.T) {
		srv := runServer(t, exec.Command, bin, "-listen", "127.0.0.1:0",
			"-turn-listen", "127.0.0.1:0", "-turn-public-ip", "127.0.0.1")
		p := newCaller(t, srv, "A")
		p.createRoom("Network check", "Ann")
		p.waitFor(`document.querySelector("#conn-test-button")?.textContent === "Test my connection"`, "the connection test's button")
		// By keyboard.
		p.press("#conn-test-button", "\r")
		p.waitFor(connTestOutcome+` !== ""`, "the test started")
		p.untilOr(connTestOutcome+` === "ok"`, "the connection test's result", p.connTestShows)
		title := p.text("#conn-test-result .conn-test-title")
		words := p.text("#conn-test-result")
		if title != "Relay works from your network" || !regexp.MustCompile(`Round trip through the relay: \d+\x{a0}ms\.`).MatchString(words) {
			t.Errorf("the result reads %q", words)
		}
		if eval[string](p, `document.querySelector("#conn-test-result").getAttribute("role")`) != "status" {
			t.Errorf("the result is not a live region")
		}
		p.until(connTestPCsClosed, "the test's connections closed")
		if got := p.text("#conn-test-button"); got != "Test again" {
			t.Errorf("the button reads %q after the test", got)
		}
		t.Logf("it said: %s", words)

		p.controlsNamed("the room with the connection test")
		for _, z := range []struct{ w, h int64 }{{1280, 800}, {375, 667}} {
			p.viewport(z.w, z.h)
			p.noHorizontalOverflow(fmt.Sprintf("the room with the connection test at %dx%d", z.w, z.h))
			p.viewShot(fmt.Sprintf("conntest-ok-%dx%d", z.w, z.h), "#members")
		}
		p.viewport(1280, 800)

		// A second press stops a running test: both presses in one task,
		// so that the test cannot end in between.
		eval[bool](p, `(b => (b.click(), b.click(), true))(document.querySelector("#conn-test-button"))`)
		p.untilOr(connTestOutcome+` === "cancelled"`, "the stopped test's result", p.connTestShows)
		if got := p.text("#conn-test-result .conn-test-title"); got != "Test stopped" {
			t.Errorf("a stopped test reads %q", got)
		}
		p.until(connTestPCsClosed, "the stopped test's connections closed")
	})

	t.Run("no relay", func(t *testing.T) {
		srv := runServer(t, exec.Command, bin, "-listen", "127.0.0.1:0", "-turn=false")
		p := newCaller(t, srv, "A")
		p.createRoom("Network check", "Ann")
		p.click("#conn-test-button")
		p.untilOr(connTestOutcome+` === "no-servers"`, "the connection test's result", p.connTestShows)
		words := p.text("#conn-test-result")
		if title := p.text("#conn-test-result .conn-test-title"); title != "Relay not available" || !strings.Contains(words, "no relay (TURN)") {
			t.Errorf("without a relay the result reads %q", words)
		}
		t.Logf("it said: %s", words)
		p.viewport(375, 667)
		p.viewShot("conntest-no-relay-375x667", "#members")
	})

	t.Run("relay unreachable", func(t *testing.T) {
		// A TURN server given to browsers, at a port where nothing
		// answers (taken, then given back).
		l, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := l.LocalAddr().String()
		l.Close()
		srv := runServer(t, exec.Command, bin, "-listen", "127.0.0.1:0", "-turn=false",
			"-ice-servers", "turn:"+dead+"?transport=udp")
		p := newCaller(t, srv, "A")
		p.createRoom("Network check", "Ann")
		p.click("#conn-test-button")
		p.untilOr(connTestOutcome+` === "no-relay"`, "the connection test's result", p.connTestShows)
		words := p.text("#conn-test-result")
		if title := p.text("#conn-test-result .conn-test-title"); title != "Relay not reachable" || !strings.Contains(words, "could not reach the relay at "+dead) {
			t.Errorf("with the relay unreachable the result reads %q", words)
		}
		t.Logf("it said: %s", words)
		p.until(connTestPCsClosed, "the test's connections closed")
	})
}

// connTestShows is what the connection test shows, for failure messages.
func (p *participant) connTestShows() string {
	return "the connection test shows " + eval[string](p, `(r => r ? (r.dataset.outcome ?? "") + ": " + r.textContent : "nothing")(document.querySelector("#conn-test-result"))`)
}

// --- the lepeerchat binary ---------------------------------------------

// buildServer builds cmd/lepeerchat into a folder of the test (with -race
// when the tests run with it) and returns the executable's path. The
// build cache makes every build after the first a link.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lepeerchat")
	args := []string{"build", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	began := time.Now()
	if out, err := exec.Command("go", append(args, "lepeerchat/cmd/lepeerchat")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built the server in %v", time.Since(began).Round(100*time.Millisecond))
	return bin
}

// runServer runs the binary, in plain-HTTP mode with a fresh data folder
// and args, through command (exec.Command, or one that runs it in a
// network namespace), and waits until it serves. It is stopped with
// SIGTERM when the test ends; its output is logged if the test failed.
func runServer(t *testing.T, command func(name string, args ...string) *exec.Cmd, bin string, args ...string) *server {
	t.Helper()
	cmd := command(bin, append([]string{"-http", "-data", t.TempDir()}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEPEERCHAT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GORACE=halt_on_error=1")
	out := &serverOutput{running: make(chan string, 1)}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("the server did not stop within 10 s of SIGTERM")
			cmd.Process.Kill()
			<-exited
		}
		if strings.Contains(out.String(), "DATA RACE") {
			t.Errorf("the race detector reported a race in the server")
		}
		if t.Failed() {
			t.Logf("the server's output:\n%s", out.String())
		}
	})
	select {
	case url := <-out.running:
		return &server{URL: strings.TrimSuffix(url, "/")}
	case <-exited:
		t.Fatalf("the server exited (%v):\n%s", cmd.ProcessState, out.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("the server did not start within 20 s:\n%s", out.String())
	}
	return nil
}

// serverOutput keeps a server's log and tells the URL it logs when it
// runs.
type serverOutput struct {
	mu      sync.Mutex
	b       strings.Builder
	told    bool
	running chan string
}

var runningURL = regexp.MustCompile(`msg="lepeerchat is running" url=(\S+)`)

func (o *serverOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b.Write(p)
	if !o.told {
		if m := runningURL.FindStringSubmatch(o.b.String()); m != nil {
			o.told = true
			o.running <- m[1]
		}
	}
	return len(p), nil
}

func (o *serverOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
