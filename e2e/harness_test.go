// Package e2e tests the browser client in a real headless Chromium against
// the real server, started in-process.
//
// The harness:
//
//	srv := startServer(t, "")        // the whole server on 127.0.0.1, fresh data folder
//	a := newParticipant(t, srv, "A") // own browser context (own storage), 1280×800
//	a.open("/")                      // navigate to a path of srv
//	a.setValue("#room-name", "Book club"); a.click("#create-room")
//	a.waitFor(`document.querySelector("#room") !== null`, "the room page")
//	got := eval[string](a, `document.title`)
//	srv.restart(t)                   // stop, then start on the same folder and port
//
// One Chromium process serves the whole package (started on first use,
// closed by TestMain); each participant is a browser context of it, with
// fake camera, microphone and screen. The tests skip when Chromium is not
// installed, unless CI is set, where they fail instead.
package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lepeerchat/metrics"
	"lepeerchat/signal"
	"lepeerchat/store"
	"lepeerchat/store/boltstore"
	"lepeerchat/web"
)

// chromiumPath is where Debian's chromium package puts the browser;
// LEPEERCHAT_CHROMIUM overrides it.
func chromiumPath() string {
	if p := os.Getenv("LEPEERCHAT_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// waitTimeout bounds every wait for the page to reach a state.
const waitTimeout = 10 * time.Second

// artifactsDir is where screenshots go: artifacts/screenshots at the root
// of the repository (gitignored), or $LEPEERCHAT_ARTIFACTS/screenshots.
func artifactsDir() string {
	root := os.Getenv("LEPEERCHAT_ARTIFACTS")
	if root == "" {
		root = filepath.Join("..", "artifacts")
	}
	return filepath.Join(root, "screenshots")
}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.close()
	os.Exit(code)
}

// --- the server -------------------------------------------------------

// server is the lepeerchat server wired as cmd/lepeerchat does, serving
// plain HTTP on a loopback port, with its state in a data folder.
type server struct {
	dir  string
	addr string // host:port, fixed after the first start
	URL  string // "http://127.0.0.1:port", no trailing slash

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
	stopFn func() error
}

// startServer starts a server on dir (a new temporary folder when empty).
// It stops when the test ends.
func startServer(t testing.TB, dir string) *server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s := &server{dir: dir, addr: "127.0.0.1:0"}
	if err := s.start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("stop server: %v", err)
		}
	})
	return s
}

func (s *server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return errors.New("server already running")
	}
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("LEPEERCHAT_E2E_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	st, err := boltstore.Open(filepath.Join(s.dir, "rooms.db"))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	m := metrics.New()
	sig, err := signal.New(signal.Config{Store: st, Bus: store.NewLocalBus(), Metrics: m, Logger: logger})
	if err != nil {
		st.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := sig.Start(ctx); err != nil {
		cancel()
		st.Close()
		return err
	}
	srv, err := web.New(web.Config{Listen: s.addr, PlainHTTP: true, DataDir: s.dir, ShutdownTimeout: time.Second},
		sig, promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}), logger)
	if err != nil {
		cancel()
		st.Close()
		return err
	}
	// The port of a stopped server may take a moment to be free again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = srv.Listen()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		cancel()
		st.Close()
		return err
	}
	s.addr = srv.Addr().String()
	s.URL = "http://" + s.addr
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	s.cancel, s.done = cancel, done
	// As cmd/lepeerchat on SIGTERM: the web server drains while the
	// signal server closes every session with "going away"; then the
	// store is closed.
	s.stopFn = func() error {
		cancel()
		shutdownCtx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		shutdownErr := sig.Shutdown(shutdownCtx)
		runErr := <-done
		if errors.Is(runErr, context.DeadlineExceeded) {
			// Chromium opens spare sockets ahead of need; http.Server waits
			// up to 5 s for one that never sends a request before it counts
			// as idle. The drain timeout cut that wait short: not a fault.
			runErr = nil
		}
		return errors.Join(runErr, shutdownErr, st.Close())
	}
	return s.waitHealthy()
}

func (s *server) waitHealthy() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the server down as SIGTERM does. Stopping a stopped server
// does nothing.
func (s *server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel == nil {
		return nil
	}
	err := s.stopFn()
	s.cancel, s.done, s.stopFn = nil, nil, nil
	return err
}

// restart stops the server and starts it again on the same data folder
// and port, as an upgrade or a crash-and-restart would.
func (s *server) restart(t testing.TB) {
	t.Helper()
	s.stopT(t)
	s.startT(t)
}

func (s *server) stopT(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("stop server: %v", err)
	}
}

func (s *server) startT(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("start server again on %s: %v", s.addr, err)
	}
}

// --- the browser ------------------------------------------------------

// browser is the Chromium process shared by the package's tests.
type browser struct {
	once    sync.Once
	err     error
	ctx     context.Context // a chromedp context holding the browser
	cancel  func()
	dataDir string
}

var shared browser

// fakeVoice is what the participants' fake microphones say, looped: a WAV
// file (48 kHz, mono, 16-bit) of a second and a half of speech-like bursts,
// a 220 + 330 Hz tone for 350 ms then 400 ms of silence, twice. Chromium's
// own fake microphone only beeps briefly, which the speaking detection
// (two reads a second of the last packet's level) sees only now and then,
// as it would a cough; speech lasts.
func fakeVoice() []byte {
	const rate = 48000
	n := rate * 3 / 2
	pcm := make([]byte, 2*n)
	for i := range n {
		t := float64(i) / rate
		v := 0.0
		if math.Mod(t, 0.75) < 0.35 {
			v = 0.2*math.Sin(2*math.Pi*220*t) + 0.2*math.Sin(2*math.Pi*330*t)
		}
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(int16(v*math.MaxInt16)))
	}
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(36+len(pcm)))
	b.WriteString("WAVEfmt ")
	// fmt chunk: its size, PCM, mono, the rate, bytes a second, bytes a
	// frame, bits a sample.
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(2 * rate), uint16(2), uint16(16)} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(len(pcm)))
	b.Write(pcm)
	return b.Bytes()
}

// chromiumOptions are the options every test browser starts with (headless,
// software rendering, fake camera, microphone and screen, 1280×800), and
// more.
func chromiumOptions(more ...chromedp.ExecAllocatorOption) []chromedp.ExecAllocatorOption {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath()),
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.WindowSize(1280, 800),
	)
	return append(opts, more...)
}

func (b *browser) start() {
	dir, err := os.MkdirTemp("", "lepeerchat-e2e-chromium-")
	if err != nil {
		b.err = err
		return
	}
	b.dataDir = dir
	voice := filepath.Join(dir, "voice.wav")
	if err := os.WriteFile(voice, fakeVoice(), 0o644); err != nil {
		b.err = err
		return
	}
	opts := chromiumOptions(chromedp.UserDataDir(dir), chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("use-file-for-fake-audio-capture", voice))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	b.ctx = ctx
	b.cancel = func() { cancelCtx(); cancelAlloc() }
	// The first action starts the browser, whose life is bound to the
	// context of that action: ctx, with no timeout.
	if err := chromedp.Do(ctx); err != nil {
		b.err = fmt.Errorf("start chromium: %w", err)
	}
}

func (b *browser) close() {
	if b.cancel != nil {
		b.cancel()
	}
	if b.dataDir != "" {
		os.RemoveAll(b.dataDir)
	}
}

// needBrowser returns the shared browser's context, skipping the test when
// no Chromium is installed and CI is unset.
func needBrowser(t testing.TB) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath()); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no browser at %s (install Debian's chromium); CI is unset, so skipping", chromiumPath())
		}
		t.Fatalf("no browser at %s, and CI is set: browser tests are required", chromiumPath())
	}
	shared.once.Do(shared.start)
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.ctx
}

// --- participants -----------------------------------------------------

// participant is one person: a browser context of its own (its own local
// storage, as a separate browser would have) with one tab.
type participant struct {
	t    testing.TB
	name string
	srv  *server
	ctx  context.Context

	mu      sync.Mutex
	console []string
}

// newParticipant opens a new browser context with one tab, sized 1280×800.
// It is closed when the test ends; on failure its console is logged.
func newParticipant(t testing.TB, srv *server, name string) *participant {
	t.Helper()
	root := needBrowser(t)
	ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
	p := &participant{t: t, name: name, srv: srv, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("%s: open a browser context: %v", name, err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, fmt.Sprintf("%s: %s", m.Type, m))
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s's console:\n\t%s", name, strings.Join(p.console, "\n\t"))
			p.mu.Unlock()
		}
		cancel()
	})
	p.viewport(1280, 800)
	return p
}

// run runs actions with the wait timeout, failing the test on error.
func (p *participant) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v\n%s", p.name, what, err, p.pageText())
	}
}

// open navigates to a path of the server (or, with a scheme, to a URL).
func (p *participant) open(path string) {
	p.t.Helper()
	url := path
	if !strings.Contains(path, "://") {
		url = p.srv.URL + path
	}
	p.run("open "+path, chromedp.Navigate(url))
}

// reload reloads the page.
func (p *participant) reload() {
	p.t.Helper()
	p.run("reload", chromedp.Reload())
}

// viewport sets the size of the page's viewport in CSS pixels.
func (p *participant) viewport(width, height int64) {
	p.t.Helper()
	p.run("set the viewport", chromedp.EmulateViewport(width, height))
}

// click clicks the first element matching a CSS selector, once visible.
func (p *participant) click(sel string) {
	p.t.Helper()
	p.run("click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// setValue replaces the value of a form field.
func (p *participant) setValue(sel, value string) {
	p.t.Helper()
	p.run("fill "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.SetValue(chromedp.CSS(sel), value))
}

// waitFor waits until a JavaScript expression is truthy, failing the test
// with what after waitTimeout.
func (p *participant) waitFor(expr, what string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v\n%s", p.name, what, err, p.pageText())
	}
}

// waitText waits until the element matching sel contains text.
func (p *participant) waitText(sel, text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? "").includes(%q)`, sel, text),
		fmt.Sprintf("%s to contain %q", sel, text))
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes
// its value.
func eval[T any](p *participant, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.name, expr, err)
	}
	return v
}

// text returns the text content of the first element matching sel, or "".
func (p *participant) text(sel string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`document.querySelector(%q)?.textContent ?? ""`, sel))
}

// pageText is what the page shows, for failure messages.
func (p *participant) pageText() string {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return "(page text unavailable: " + err.Error() + ")"
	}
	return "page of " + p.name + ": " + strings.ReplaceAll(s, "\n", "\n\t")
}

// screenshot saves a full-page PNG under artifactsDir() as name.png.
func (p *participant) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("%s: screenshot %s: %v", p.name, name, err)
	}
	dir := artifactsDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatalf("create %s: %v", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		p.t.Fatalf("save screenshot: %v", err)
	}
}

// noHorizontalOverflow fails the test when the page is wider than its
// viewport.
func (p *participant) noHorizontalOverflow(page string) {
	p.t.Helper()
	r := eval[[]int](p, `[document.documentElement.scrollWidth, innerWidth]`)
	if r[0] > r[1] {
		wide := eval[string](p, `[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > innerWidth + 0.5).slice(0, 5).map(e => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className).join(", ")`)
		p.t.Errorf("%s: %s overflows horizontally at %d px: scrollWidth %d (too wide: %s)", p.name, page, r[1], r[0], wide)
	}
}

// colorScheme emulates prefers-color-scheme: "light" or "dark".
func (p *participant) colorScheme(scheme string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
	if err != nil {
		p.t.Fatalf("%s: emulate %s colour scheme: %v", p.name, scheme, err)
	}
}

// unnamedControlsJS lists the visible controls that have no accessible
// name (visible text, a label, aria-label or aria-labelledby).
const unnamedControlsJS = `[...document.querySelectorAll("button, a[href], input:not([type=hidden]), select, textarea, summary")]
	.filter(el => el.getClientRects().length > 0)
	.filter(el => {
		const by = (el.getAttribute("aria-labelledby") || "").split(/\s+/).map(id => document.getElementById(id)?.textContent || "").join("");
		const labels = [...(el.labels || [])].map(l => l.textContent).join("");
		const name = el.getAttribute("aria-label") || by || labels || (el.tagName === "INPUT" || el.tagName === "SELECT" ? "" : el.textContent);
		return !name.trim();
	})
	.map(el => el.outerHTML.slice(0, 120))`

// controlsNamed fails the test when a visible control has no name for
// screen readers.
func (p *participant) controlsNamed(page string) {
	p.t.Helper()
	if bad := eval[[]string](p, unnamedControlsJS); len(bad) > 0 {
		p.t.Errorf("%s: %s has controls without a name: %s", p.name, page, strings.Join(bad, "; "))
	}
}
