//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"lepeerchat/internal/natlab"
)

// TestBrowsersAcrossNATs puts two headless Chromiums in the two homes of a
// natlab.Lab, each behind its own NAT whose firewall lets traffic out only
// to the server (the real binary, in the lab's public namespace). Through
// the UI one creates a room and invites the other; they must connect
// through the built-in relay ("relayed" in the member list), chat both ways
// and hear each other. The connection test there must say that the relay
// works and that a public address was found. With the firewalls opened, a
// new pair must connect directly.
//
// Each Chromium runs inside its namespace (ip netns exec); DevTools talks
// to it over the pipe chromedp uses by default, which knows no namespaces.
// It needs root (see natlab) and Chromium; without either it skips, unless
// CI is set: then it fails.
func TestBrowsersAcrossNATs(t *testing.T) {
	if _, err := exec.LookPath(chromiumPath()); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no browser at %s; CI is unset, so skipping", chromiumPath())
		}
		t.Fatalf("no browser at %s, and CI is set: browser tests are required", chromiumPath())
	}
	lab := natlab.New(t)
	bin := buildServer(t)
	began := time.Now()
	srv := runServer(t, func(name string, args ...string) *exec.Cmd {
		return lab.Command(lab.Pub, append([]string{name}, args...)...)
	},
		bin, "-listen", natlab.ServerIP+":8080", "-turn-listen", ":3478")
	if want := "http://" + natlab.ServerIP + ":8080"; srv.URL != want {
		t.Fatalf("the server runs at %s, want %s", srv.URL, want)
	}
	homeA := labBrowser(t, lab, lab.HomeA, srv.URL)
	homeB := labBrowser(t, lab, lab.HomeB, srv.URL)

	t.Run("firewalled", func(t *testing.T) {
		a, b, ids := labPair(t, homeA, homeB, srv, "Behind firewalls")
		for _, p := range []*participant{a, b} {
			p.until(peersIn("relayed", 1), "the other relayed, with a round-trip time")
		}
		talk(t, a, b, ids)
		if n := lab.Blocked(t); n == 0 {
			t.Error("the firewalls dropped nothing: the browsers never tried a direct path")
		} else {
			t.Logf("the firewalls dropped %d packets of direct attempts", n)
		}
		pair := selectedPair(a)
		if !strings.Contains(pair, "relay "+natlab.ServerIP+":") {
			t.Errorf("A's selected pair %q has no relay candidate on the server", pair)
		}
		t.Logf("relayed: %s; A's pair: %s", a.text(fmt.Sprintf(`#member-list li[data-member-id=%q] .peer-state`, ids[1])), pair)

		// By keyboard: the member list grows and shrinks under a mouse as
		// the speaking marks come and go, moving the button.
		a.press("#conn-test-button", "\r")
		a.untilOr(connTestOutcome+` === "ok"`, "the connection test's result", a.connTestShows)
		words := a.text("#conn-test-result")
		if !strings.Contains(words, "Relay works from your network") || !strings.Contains(words, "Direct connections: likely.") {
			t.Errorf("the connection test behind the NAT says %q", words)
		}
		t.Logf("the connection test said: %s", words)
	})
	if t.Failed() {
		return
	}

	lab.OpenFirewalls(t)
	t.Run("open", func(t *testing.T) {
		a, b, ids := labPair(t, homeA, homeB, srv, "Open firewalls")
		for _, p := range []*participant{a, b} {
			p.until(peersDirect(1), "the other direct, with a round-trip time")
		}
		talk(t, a, b, ids)
		pair := selectedPair(a)
		_, remote, _ := strings.Cut(pair, " ⇄ ")
		if strings.Contains(pair, "relay") || !strings.Contains(remote, " "+natlab.NATBIP+":") {
			t.Errorf("A's selected pair %q does not go straight to B's public address %s", pair, natlab.NATBIP)
		}
		t.Logf("direct: %s; A's pair: %s", a.text(fmt.Sprintf(`#member-list li[data-member-id=%q] .peer-state`, ids[1])), pair)
	})
	t.Logf("the whole test took %v after the build", time.Since(began).Round(100*time.Millisecond))
}

// peersIn is true once every one of the others' rows in the member list
// shows state with a round-trip time.
func peersIn(state string, others int) string {
	return fmt.Sprintf(`(() => {
		const s = [...document.querySelectorAll("#member-list li[data-member-id]:not([data-self=true]) .peer-state")];
		return s.length === %d && s.every((e) => e.dataset.peerState === %q && /^%s · \d+ ms$/.test(e.textContent));
	})()`, others, state, state)
}

// selectedPair describes the candidate pair p's connected peer connection
// uses: "type address:port ⇄ type address:port", local first.
func selectedPair(p *participant) string {
	p.t.Helper()
	return eval[string](p, `(async () => {
		for (const pc of __probe.pcs) {
			if (pc.connectionState !== "connected") continue;
			const r = await pc.getStats();
			let pair = null;
			r.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = r.get(s.selectedCandidatePairId); });
			if (!pair) continue;
			const c = (id) => { const x = r.get(id); return x.candidateType + " " + x.address + ":" + x.port; };
			return c(pair.localCandidateId) + " ⇄ " + c(pair.remoteCandidateId);
		}
		return "";
	})()`)
}

// labPair makes a room through the UI: Ann in home A creates it and
// invites; Bob in home B joins by the link. It returns them and their
// member ids.
func labPair(t *testing.T, homeA, homeB context.Context, srv *server, room string) (a, b *participant, ids []string) {
	t.Helper()
	a = labParticipant(t, homeA, srv, "A")
	b = labParticipant(t, homeB, srv, "B")
	a.createRoom(room, "Ann")
	b.joinByLink(a.invite(false), "Bob")
	for _, p := range []*participant{a, b} {
		p.waitMembers("Ann", "Bob")
		ids = append(ids, eval[string](p, `document.querySelector("#member-list li[data-self=true]").dataset.memberId`))
	}
	return a, b, ids
}

// talk checks that a and b chat both ways and hear each other's
// microphone.
func talk(t *testing.T, a, b *participant, ids []string) {
	t.Helper()
	a.typeMessage("hello from Ann")
	b.waitChat("Ann: hello from Ann")
	b.typeMessage("hello from Bob")
	a.waitChat("You: hello from Ann", "Bob: hello from Bob")
	b.waitChat("Ann: hello from Ann", "You: hello from Bob")
	a.click("#mic-button")
	b.click("#mic-button")
	b.audioFlows(ids[0], "Ann")
	a.audioFlows(ids[1], "Bob")
}

// labBrowser starts a headless Chromium inside namespace ns, with the
// harness's flags but no loopback candidates, and origin (plain HTTP on a
// non-loopback address) treated as secure, as HTTPS would be, so that the
// page may use the microphone. It is closed when the test ends, before the
// lab goes.
func labBrowser(t *testing.T, lab *natlab.Lab, ns, origin string) context.Context {
	t.Helper()
	opts := chromiumOptions(
		chromedp.Flag("unsafely-treat-insecure-origin-as-secure", origin),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			in := lab.Command(ns, cmd.Args...)
			cmd.Path, cmd.Args, cmd.Err = in.Path, in.Args, in.Err
			// ip netns exec becomes Chromium, which keeps this.
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, whose life is bound to the
	// context of that action: ctx, with no timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium in %s: %v", ns, err)
	}
	return ctx
}

// labParticipant is a participant in its own browser context of a
// browser made by labBrowser, with probeJS installed.
func labParticipant(t *testing.T, browser context.Context, srv *server, name string) *participant {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: open a browser context: %v", name, err)
	}
	p := &participant{t: t, name: name, srv: srv, ctx: ctx}
	probe, done := context.WithTimeout(ctx, waitTimeout)
	defer done()
	if _, err := chromedp.Call(probe, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: probeJS}); err != nil {
		t.Fatalf("%s: install the probe: %v", name, err)
	}
	p.viewport(1280, 800)
	return p
}
