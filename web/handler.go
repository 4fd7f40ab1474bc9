package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"path"
	"strings"
	"time"
)

// staticFiles is the browser client, served as written (no build step).
//
//go:embed static
var staticFiles embed.FS

// hstsValue asks browsers to use HTTPS only, for two years. It is sent only
// when this process terminates TLS: behind a proxy, HSTS is the proxy's call.
const hstsValue = "max-age=63072000"

// permissionsPolicy grants camera, microphone, screen capture and fullscreen
// to this origin only, and turns off features the client never uses.
const permissionsPolicy = "camera=(self), microphone=(self), display-capture=(self), fullscreen=(self), " +
	"geolocation=(), payment=(), usb=()"

// routes builds the handler tree of the main listener.
func (s *Server) routes(ws, metrics http.Handler) http.Handler {
	assets := mustLoadAssets(staticFiles)
	if ws == nil {
		ws = http.NotFoundHandler()
	}
	if metrics == nil {
		metrics = http.NotFoundHandler()
	}
	ws = s.trackSession(ws)
	rest := s.limitRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			metrics.ServeHTTP(w, r)
		case "/healthz":
			healthz(w, r)
		default:
			assets.ServeHTTP(w, r)
		}
	}))
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			ws.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
	return s.logRequests(securityHeaders(mux, s.tlsConfig != nil))
}

// acmeHTTPHandler is the handler of the ACME HTTP-01 listener: autocert
// answers the challenges and every other request is redirected to HTTPS.
func (s *Server) acmeHTTPHandler() http.Handler {
	return s.logRequests(securityHeaders(s.limitRequests(s.acme.HTTPHandler(http.HandlerFunc(s.redirectToHTTPS))), false))
}

// metricsRoutes is the handler of the metrics listener: metrics at
// /metrics, 404 elsewhere.
func (s *Server) metricsRoutes(metrics http.Handler) http.Handler {
	if metrics == nil {
		metrics = http.NotFoundHandler()
	}
	return s.logRequests(securityHeaders(s.limitRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		metrics.ServeHTTP(w, r)
	})), false))
}

// requireBearer lets through only the requests that carry "Authorization:
// Bearer <token>" (the scheme in any case), and answers 401 to the others.
// The token is compared by its SHA-256 hash in constant time, so that
// neither its bytes nor its length can be learnt from timings.
func requireBearer(next http.Handler, token string) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, given, _ := strings.Cut(auth, " ")
		got := sha256.Sum256([]byte(given))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !strings.EqualFold(scheme, "Bearer") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "401 a bearer token is needed", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// redirectToHTTPS sends GET and HEAD requests for one of the ACME domains to
// the same path over HTTPS. Other hosts get 404, so that the Location header
// never names a host the operator did not configure; other methods get 400,
// as a request body sent over plain HTTP should not be sent again.
func (s *Server) redirectToHTTPS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "Use HTTPS.", http.StatusBadRequest)
		return
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if err := s.acme.HostPolicy(r.Context(), host); err != nil {
		http.NotFound(w, r)
		return
	}
	if port := s.httpsPort(); port != "" {
		host = net.JoinHostPort(host, port)
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// trackSession runs the WebSocket handler with a request context that is
// also cancelled when the server starts shutting down, and counts running
// handlers so that Run can wait for them: http.Server.Shutdown neither
// signals nor waits for hijacked connections. It covers the upgrade only:
// the session outlives its handler (signal.Server serves each on a
// goroutine of its own) and is ended by signal.Server.Shutdown, which
// cmd/lepeerchat calls once Run has returned.
func (s *Server) trackSession(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.sessions.Add(1)
		defer s.sessions.Done()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(s.draining, cancel)
		defer stop()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// healthz answers liveness probes.
func healthz(w http.ResponseWriter, r *http.Request) {
	if !allowGetHead(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		fmt.Fprintln(w, `{"status":"ok"}`)
	}
}

// allowGetHead answers 405 to methods other than GET and HEAD and reports
// whether the request may proceed.
func allowGetHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
	return false
}

// securityHeaders sets the security headers on every response before the
// wrapped handler runs, so that errors, redirects and 404s carry them too.
// HSTS is added only when tls is true.
func securityHeaders(next http.Handler, tls bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy(r.Host, tls))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Permissions-Policy", permissionsPolicy)
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if tls {
			h.Set("Strict-Transport-Security", hstsValue)
		}
		next.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy returns the CSP: same-origin resources only, no
// inline script or style, media from the camera, microphone and screen.
// CSP level 3 lets 'self' match the WebSocket of the same origin, but some
// browsers still in use do not; so the WebSocket URL of the requested host
// is named too (wss: only, with TLS; both schemes in plain-HTTP mode, where
// the scheme the browser sees depends on the proxy). A Host that is not a
// plain host[:port] is left out rather than copied into the header.
func contentSecurityPolicy(host string, tls bool) string {
	connect := "connect-src 'self'"
	if isPlainHost(host) {
		if tls {
			connect += " wss://" + host
		} else {
			connect += " ws://" + host + " wss://" + host
		}
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
		"media-src 'self' blob: mediastream:; " + connect + "; object-src 'none'; " +
		"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
}

// isPlainHost reports whether host contains only the characters of a DNS
// name, IP address and port, so it is safe to copy into a header value.
func isPlainHost(host string) bool {
	if host == "" || len(host) > 260 {
		return false
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '-' || r == ':' || r == '[' || r == ']') {
			return false
		}
	}
	return true
}

// asset is one embedded file, prepared once at start.
type asset struct {
	name        string
	data        []byte
	etag        string // strong: quoted hash of the content
	contentType string
}

// assets serves the embedded client.
//
// Caching: every asset is sent with a strong ETag (a hash of its content,
// computed once at start) and "Cache-Control: no-cache", so browsers keep a
// copy but revalidate it on each use and get a bodyless 304 when it has not
// changed. Content-hashed names with "immutable" would save even that round
// trip, but the client is plain ES modules served as written, with no build
// step: hashed names would mean rewriting every import. After an upgrade the
// hashes change and browsers fetch the new files at once, never mixing old
// and new modules.
//
// Routing: a path naming an asset serves it; any other path whose last
// segment has no extension is a client-side route (/, /r/abc, /join/xyz) and
// gets index.html; a path that looks like a file but is not one gets 404.
// Methods other than GET and HEAD get 405.
type assets struct {
	byPath map[string]*asset // key: URL path, such as "/app.css"
	index  *asset
}

// mustLoadAssets prepares the embedded client. It panics if the embedded
// files are unusable, which is a build defect, not a run-time condition.
func mustLoadAssets(fsys embed.FS) *assets {
	a, err := loadAssets(fsys, "static")
	if err != nil {
		panic(err)
	}
	return a
}

// loadAssets reads every file under root in fsys and computes its ETag and
// content type.
func loadAssets(fsys fs.FS, root string) (*assets, error) {
	sub, err := fs.Sub(fsys, root)
	if err != nil {
		return nil, fmt.Errorf("web: embedded client: %w", err)
	}
	a := &assets{byPath: map[string]*asset{}}
	err = fs.WalkDir(sub, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(sub, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		a.byPath["/"+name] = &asset{
			name:        name,
			data:        data,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`,
			contentType: contentType(name, data),
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: embedded client: %w", err)
	}
	a.index = a.byPath["/index.html"]
	if a.index == nil {
		return nil, fmt.Errorf("web: embedded client has no index.html")
	}
	return a, nil
}

// contentType returns the media type of an asset. The types of the
// client's own kinds of files are fixed here rather than taken from the
// host's MIME database, which mime.TypeByExtension consults and which may say
// text/plain for .js, breaking ES modules. Other extensions fall back to that
// database, then to content sniffing.
func contentType(name string, data []byte) string {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".json":
		return "application/json"
	case ".webmanifest":
		return "application/manifest+json"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".woff2":
		return "font/woff2"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return http.DetectContentType(data)
}

// ServeHTTP implements the routing and caching described on assets.
func (a *assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := a.byPath[r.URL.Path]
	if f == nil {
		if strings.Contains(path.Base(r.URL.Path), ".") {
			http.NotFound(w, r)
			return
		}
		f = a.index
	}
	if !allowGetHead(w, r) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.data))
}

// logRequests logs each request at debug level: method, path, status, size
// and duration. It logs the path only, never the query string (which may
// carry tokens on /ws); the URL fragment never reaches the server.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.logger.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		s.logger.LogAttrs(r.Context(), slog.LevelDebug, "web: request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Int64("bytes", sw.bytes),
			slog.Duration("duration", time.Since(start)),
		)
	})
}

// statusWriter records the status and size of a response. It passes
// Hijack and Flush through, since the WebSocket handler needs the first and
// streaming handlers the second, and Unwrap for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	// Informational statuses (other than 101, which is final) precede the
	// final one.
	if w.status == 0 || (w.status < 200 && w.status != http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush sends buffered data to the client.
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Hijack hands the connection over, as a WebSocket upgrade requires.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}
