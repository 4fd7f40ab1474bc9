package web

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// do sends one request through the server's handler.
func do(h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	requests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/", 200},
		{"GET", "/r/abc", 200},
		{"GET", "/app.css", 200},
		{"HEAD", "/index.html", 200},
		{"GET", "/healthz", 200},
		{"GET", "/metrics", 200},
		{"GET", "/ws", 200},
		{"GET", "/missing.js", 404},
		{"GET", "/r/abc/nothing.png", 404},
		{"POST", "/", 405},
		{"DELETE", "/app.css", 405},
		{"PUT", "/healthz", 405},
	}
	modes := []struct {
		name string
		cfg  func(*testing.T) Config
		tls  bool
	}{
		{"plain", plainConfig, false},
		{"self-signed", selfSignedConfig, true},
	}
	for _, mode := range modes {
		h := newServer(t, mode.cfg(t)).Handler()
		for _, rq := range requests {
			t.Run(mode.name+" "+rq.method+" "+rq.path, func(t *testing.T) {
				rec := do(h, rq.method, rq.path, nil)
				if rec.Code != rq.want {
					t.Fatalf("status = %d, want %d", rec.Code, rq.want)
				}
				hdr := rec.Header()
				for name, want := range map[string]string{
					"X-Content-Type-Options":       "nosniff",
					"Referrer-Policy":              "no-referrer",
					"X-Frame-Options":              "DENY",
					"Cross-Origin-Opener-Policy":   "same-origin",
					"Cross-Origin-Resource-Policy": "same-origin",
				} {
					if got := hdr.Get(name); got != want {
						t.Errorf("%s = %q, want %q", name, got, want)
					}
				}
				pp := hdr.Get("Permissions-Policy")
				for _, feature := range []string{"camera=(self)", "microphone=(self)", "display-capture=(self)"} {
					if !strings.Contains(pp, feature) {
						t.Errorf("Permissions-Policy %q lacks %s", pp, feature)
					}
				}
				csp := hdr.Get("Content-Security-Policy")
				for _, directive := range []string{"default-src 'self'", "script-src 'self';", "style-src 'self';",
					"object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'",
					"media-src 'self' blob: mediastream:", "img-src 'self' data: blob:", "connect-src 'self'"} {
					if !strings.Contains(csp, directive) {
						t.Errorf("CSP %q lacks %q", csp, directive)
					}
				}
				for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*"} {
					if strings.Contains(csp, bad) {
						t.Errorf("CSP %q contains %q", csp, bad)
					}
				}
				hsts := hdr.Get("Strict-Transport-Security")
				if mode.tls && hsts != "max-age=63072000" {
					t.Errorf("HSTS = %q with TLS, want max-age=63072000", hsts)
				}
				if !mode.tls && hsts != "" {
					t.Errorf("HSTS = %q in plain-HTTP mode, want none", hsts)
				}
			})
		}
	}
}

func TestCSPWebSocketSource(t *testing.T) {
	cases := []struct {
		name, host string
		tls        bool
		want       string
	}{
		{"tls", "chat.example.org", true, "connect-src 'self' wss://chat.example.org;"},
		{"tls with port", "localhost:8443", true, "connect-src 'self' wss://localhost:8443;"},
		{"plain behind proxy", "chat.example.org", false, "connect-src 'self' ws://chat.example.org wss://chat.example.org;"},
		{"ipv6", "[::1]:8443", true, "connect-src 'self' wss://[::1]:8443;"},
		{"injection refused", "x; script-src *", true, "connect-src 'self';"},
		{"quote refused", "x'y", true, "connect-src 'self';"},
		{"empty", "", true, "connect-src 'self';"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			csp := contentSecurityPolicy(c.host, c.tls)
			if !strings.Contains(csp, c.want) {
				t.Errorf("CSP = %q, want it to contain %q", csp, c.want)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	h := newServer(t, plainConfig(t)).Handler()
	index := do(h, "GET", "/index.html", nil).Body.String()
	if !strings.Contains(index, "lepeerchat") {
		t.Fatalf("index.html does not name the application")
	}
	cases := []struct {
		name, method, path string
		wantStatus         int
		wantType           string // prefix
		wantBody           string // exact when non-empty
		wantCache          string
	}{
		{"root is the client", "GET", "/", 200, "text/html", index, "no-cache"},
		{"room route is the client", "GET", "/r/abc", 200, "text/html", index, "no-cache"},
		{"join route is the client", "GET", "/join/xyz", 200, "text/html", index, "no-cache"},
		{"deep route with trailing slash", "GET", "/r/abc/", 200, "text/html", index, "no-cache"},
		{"stylesheet", "GET", "/app.css", 200, "text/css", "", "no-cache"},
		{"icon", "GET", "/favicon.svg", 200, "image/svg+xml", "", "no-cache"},
		{"missing file is 404, not the client", "GET", "/nope.js", 404, "text/plain", "", ""},
		{"missing nested file is 404", "GET", "/r/abc/app.css", 404, "text/plain", "", ""},
		{"health", "GET", "/healthz", 200, "application/json", "{\"status\":\"ok\"}\n", "no-store"},
		{"ws reaches its handler", "GET", "/ws", 200, "text/plain", "ws reached", ""},
		{"ws with query reaches its handler", "GET", "/ws?v=1", 200, "text/plain", "ws reached", ""},
		{"ws handler sees every method", "POST", "/ws", 200, "text/plain", "ws reached", ""},
		{"metrics reach their handler", "GET", "/metrics", 200, "text/plain", "metrics reached", ""},
		{"ws prefix is not ws", "GET", "/wsx", 200, "text/html", index, "no-cache"},
		{"POST on a client route", "POST", "/r/abc", 405, "text/plain", "", ""},
		{"OPTIONS on an asset", "OPTIONS", "/app.css", 405, "text/plain", "", ""},
		{"POST on health", "POST", "/healthz", 405, "text/plain", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := do(h, c.method, c.path, nil)
			if rec.Code != c.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, c.wantStatus)
			}
			if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, c.wantType) {
				t.Errorf("Content-Type = %q, want %q…", got, c.wantType)
			}
			if c.wantBody != "" && rec.Body.String() != c.wantBody {
				t.Errorf("body = %q, want %q", rec.Body.String(), c.wantBody)
			}
			if got := rec.Header().Get("Cache-Control"); got != c.wantCache {
				t.Errorf("Cache-Control = %q, want %q", got, c.wantCache)
			}
			if c.wantStatus == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want GET, HEAD", rec.Header().Get("Allow"))
			}
		})
	}
}

func TestAssetRevalidation(t *testing.T) {
	h := newServer(t, plainConfig(t)).Handler()
	for _, path := range []string{"/app.css", "/index.html", "/", "/r/abc"} {
		t.Run(path, func(t *testing.T) {
			first := do(h, "GET", path, nil)
			etag := first.Header().Get("ETag")
			if !regexp.MustCompile(`^"[A-Za-z0-9_-]{24}"$`).MatchString(etag) {
				t.Fatalf("ETag = %q, want a strong quoted hash", etag)
			}
			again := do(h, "GET", path, http.Header{"If-None-Match": {etag}})
			if again.Code != http.StatusNotModified {
				t.Fatalf("revalidation status = %d, want 304", again.Code)
			}
			if again.Body.Len() != 0 {
				t.Errorf("304 has a body of %d bytes", again.Body.Len())
			}
			if again.Header().Get("ETag") != etag {
				t.Errorf("304 ETag = %q, want %q", again.Header().Get("ETag"), etag)
			}
			stale := do(h, "GET", path, http.Header{"If-None-Match": {`"stale"`}})
			if stale.Code != http.StatusOK || !bytes.Equal(stale.Body.Bytes(), first.Body.Bytes()) {
				t.Errorf("with a stale ETag: status %d, want 200 with the full body", stale.Code)
			}
		})
	}
	// Client routes all serve index.html, so they share its ETag.
	if a, b := do(h, "GET", "/", nil).Header().Get("ETag"), do(h, "GET", "/index.html", nil).Header().Get("ETag"); a != b {
		t.Errorf("ETag of / = %q, of /index.html = %q", a, b)
	}
	if a, b := do(h, "GET", "/", nil).Header().Get("ETag"), do(h, "GET", "/app.css", nil).Header().Get("ETag"); a == b {
		t.Errorf("two different files share the ETag %q", a)
	}
}

func TestHead(t *testing.T) {
	h := newServer(t, plainConfig(t)).Handler()
	for _, path := range []string{"/", "/r/abc", "/app.css", "/healthz"} {
		t.Run(path, func(t *testing.T) {
			get := do(h, "GET", path, nil)
			head := do(h, "HEAD", path, nil)
			if head.Code != http.StatusOK {
				t.Fatalf("HEAD status = %d", head.Code)
			}
			if head.Body.Len() != 0 {
				t.Errorf("HEAD has a body of %d bytes", head.Body.Len())
			}
			if head.Header().Get("Content-Type") != get.Header().Get("Content-Type") {
				t.Errorf("HEAD Content-Type %q differs from GET's %q", head.Header().Get("Content-Type"), get.Header().Get("Content-Type"))
			}
		})
	}
}

// TestClientHasNoInlineCode checks that the embedded pages obey the CSP:
// no inline script, no inline style, no inline event handler.
func TestClientHasNoInlineCode(t *testing.T) {
	a := mustLoadAssets(staticFiles)
	inline := []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]`), // script with content
		regexp.MustCompile(`(?i)<style\b`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)javascript:`),
	}
	for p, f := range a.byPath {
		if !strings.HasSuffix(p, ".html") {
			continue
		}
		for _, re := range inline {
			if m := re.Find(f.data); m != nil {
				t.Errorf("%s contains inline code %q", p, m)
			}
		}
		for _, tag := range regexp.MustCompile(`(?i)<script\b[^>]*>`).FindAll(f.data, -1) {
			if !bytes.Contains(tag, []byte(" src=")) {
				t.Errorf("%s has a script without src: %q", p, tag)
			}
		}
		if !bytes.Contains(f.data, []byte(`name="viewport"`)) {
			t.Errorf("%s has no viewport meta", p)
		}
	}
}

func TestRequestLogOmitsQuery(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(Config{PlainHTTP: true}, marker("ws"), nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	do(s.Handler(), "GET", "/ws?token=secret123", nil)
	do(s.Handler(), "GET", "/r/abc?invite=secret456", nil)
	log := buf.String()
	for _, want := range []string{"method=GET path=/ws status=200", "path=/r/abc status=200", "duration="} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "secret") {
		t.Errorf("log contains a query string:\n%s", log)
	}
}

func TestNilHandlersAnswer404(t *testing.T) {
	s, err := New(Config{PlainHTTP: true}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/ws", "/metrics"} {
		if rec := do(s.Handler(), "GET", path, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s with a nil handler: status %d, want 404", path, rec.Code)
		}
	}
}

// sink is a ResponseWriter that accepts everything, 1xx statuses included
// (httptest.ResponseRecorder takes the first status as final).
type sink struct{ h http.Header }

func (s sink) Header() http.Header         { return s.h }
func (s sink) Write(p []byte) (int, error) { return len(p), nil }
func (s sink) WriteHeader(int)             {}

func TestStatusWriterRecordsStatus(t *testing.T) {
	cases := []struct {
		name   string
		codes  []int
		write  string
		status int
	}{
		{"implicit 200", nil, "hello", 200},
		{"explicit", []int{404}, "nope", 404},
		{"early hints then final", []int{103, 418}, "short and stout", 418},
		{"switching protocols is final", []int{101}, "", 101},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sw := &statusWriter{ResponseWriter: sink{http.Header{}}}
			for _, code := range c.codes {
				sw.WriteHeader(code)
			}
			io.WriteString(sw, c.write)
			if sw.status != c.status || sw.bytes != int64(len(c.write)) {
				t.Errorf("status %d, bytes %d; want %d, %d", sw.status, sw.bytes, c.status, len(c.write))
			}
		})
	}
}
