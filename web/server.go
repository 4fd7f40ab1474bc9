// Package web is the HTTP side of lepeerchat: it serves the embedded browser
// client, mounts the WebSocket signalling handler at /ws, the Prometheus
// handler at /metrics and a health check at /healthz, puts strict security
// headers on every response, and terminates TLS in one of three modes
// (certificate files, ACME, or a self-signed certificate generated and kept in
// the data folder) or serves plain HTTP behind a TLS-terminating proxy.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// Defaults applied by New to the zero fields of Config.
const (
	DefaultListen          = ":8443"
	DefaultACMEHTTPListen  = ":80"
	DefaultShutdownTimeout = 10 * time.Second
	DefaultReadTimeout     = 15 * time.Second
	DefaultWriteTimeout    = 30 * time.Second
)

// readHeaderTimeout bounds the reading of a request's header (and the TLS
// handshake before it) when Config.ReadTimeout is longer; idleTimeout bounds
// how long a kept-alive connection may wait for its next request.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
)

// Config says where and how the server listens. The TLS mode follows from
// which fields are set: CertFile and KeyFile select certificate files,
// ACMEDomains selects ACME, PlainHTTP selects plain HTTP, and none of them
// selects a self-signed certificate kept in DataDir. Combining two modes is
// an error.
type Config struct {
	// Listen is the TCP address of the main (HTTPS or plain HTTP) listener.
	// Default ":8443". Port 0 picks a free port; see Server.Addr.
	Listen string

	// DataDir holds the generated self-signed certificate (cert.pem,
	// key.pem) and the ACME cache (acme/). Required in those two modes.
	DataDir string

	// CertFile and KeyFile are PEM files of a certificate chain and its
	// private key. They are loaded at start and reloaded on SIGHUP.
	CertFile string
	KeyFile  string

	// ACMEDomains are the host names to obtain certificates for from an ACME
	// certificate authority; no other name is ever requested.
	ACMEDomains []string
	// ACMEEmail is the optional contact address given to the ACME CA.
	ACMEEmail string
	// ACMEDirectoryURL overrides the ACME directory (for example a staging
	// CA). Empty means the autocert default.
	ACMEDirectoryURL string
	// ACMEHTTPListen is the address of the plain-HTTP listener that answers
	// ACME HTTP-01 challenges and redirects every other request to HTTPS.
	// Default ":80". Used only in ACME mode.
	ACMEHTTPListen string

	// PlainHTTP serves plain HTTP, for running behind a reverse proxy that
	// terminates TLS. Strict-Transport-Security is then left to the proxy.
	PlainHTTP bool

	// ShutdownTimeout bounds the graceful shutdown in Run. Default 10 s.
	ShutdownTimeout time.Duration

	// ReadTimeout bounds the reading of a whole request, header and body,
	// from its first byte (and a TLS handshake); WriteTimeout bounds the
	// time from the end of a request's header to the end of its response.
	// A connection that overstays either is closed. Both hold on every
	// listener and every path but a WebSocket: a connection's deadlines
	// are lifted as the WebSocket handler takes it over (hijacks it), and
	// the signalling server sets its own. WebSockets are
	// HTTP/1.1 only: the HTTP/2 server offers no extended CONNECT, so
	// browsers open them on a connection of their own even when the page
	// came over HTTP/2. Defaults 15 s and 30 s.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// MaxConnsPerClient caps the connections one client address (an IPv6
	// client by its /64) may hold open at once on the server's listeners,
	// and its requests in progress; MaxConns caps the connections of all
	// clients together. Behind a trusted proxy (TrustProxy), where every
	// connection comes from the proxy, only MaxConns caps connections and
	// MaxConnsPerClient caps the requests in progress of each forwarded
	// address. A connection counts until it closes or becomes a WebSocket
	// (then only the signalling server's own cap counts it). Past a cap,
	// a few more connections are answered 429 (client) or 503 (server) with
	// "Connection: close"; beyond those a connection is closed as soon as it
	// is accepted, before a TLS handshake. Defaults 64 and 4096.
	MaxConnsPerClient int
	MaxConns          int
	// OnRefuse, when set, is told of each connection or request refused by
	// these caps, from the goroutine refusing it: reason is RefusedClient or
	// RefusedServer for one answered 429 or 503, RefusedClosed for a
	// connection closed as it was accepted.
	OnRefuse func(reason string)

	// TrustProxy takes the client address of a request from the last
	// X-Forwarded-For entry, as the signalling server does.
	TrustProxy bool

	// MetricsListen, when set, serves the metrics handler on its own
	// plain-HTTP listener at this address, and not on the main one.
	MetricsListen string
	// MetricsToken, when set, makes /metrics answer only requests that
	// carry "Authorization: Bearer <MetricsToken>", wherever it is served.
	MetricsToken string
}

// Mode is the way the server obtains its TLS certificate, if any.
type Mode string

// The TLS modes, as chosen by Config.
const (
	ModeCertFiles  Mode = "cert-files"
	ModeACME       Mode = "acme"
	ModeSelfSigned Mode = "self-signed"
	ModePlainHTTP  Mode = "plain-http"
)

// Server is the HTTP(S) server of one lepeerchat process. Create it with New,
// optionally call Listen to bind its sockets early (to learn Addr and URL),
// then call Run once.
type Server struct {
	cfg     Config
	mode    Mode
	logger  *slog.Logger
	handler http.Handler

	tlsConfig *tls.Config        // nil in plain-HTTP mode
	files     *certFiles         // certificate-files mode only
	acme      *autocert.Manager  // ACME mode only
	draining  context.Context    // done once shutdown starts; ends WebSocket sessions
	drain     context.CancelFunc // cancels draining
	sessions  sync.WaitGroup     // WebSocket handlers still running
	conns     *tally             // connections open on the listeners
	requests  *tally             // requests in progress other than WebSocket handshakes
	metrics   http.Handler       // the metrics listener's handler, with MetricsListen

	mu        sync.Mutex
	ln        net.Listener // main listener, once Listen succeeded
	httpLn    net.Listener // ACME HTTP-01 listener, once Listen succeeded
	metricsLn net.Listener // metrics listener, once Listen succeeded
	running   bool
}

// New checks cfg, prepares the certificate of the chosen TLS mode (loading
// certificate files, or creating or reusing the self-signed certificate in
// cfg.DataDir) and builds the handler tree. ws is mounted at exactly /ws and
// metrics at /metrics (or on its own listener, with Config.MetricsListen);
// a nil handler makes its path answer 404. A nil logger discards logs. New
// does not open any socket.
func New(cfg Config, ws, metrics http.Handler, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ACMEHTTPListen == "" {
		cfg.ACMEHTTPListen = DefaultACMEHTTPListen
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxConnsPerClient <= 0 {
		cfg.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	mode, err := cfg.mode()
	if err != nil {
		return nil, err
	}

	s := &Server{
		cfg: cfg, mode: mode, logger: logger,
		conns:    newTally(cfg.MaxConnsPerClient, cfg.MaxConns),
		requests: newTally(cfg.MaxConnsPerClient, cfg.MaxConns),
	}
	s.draining, s.drain = context.WithCancel(context.Background())

	switch mode {
	case ModeCertFiles:
		s.files = &certFiles{certFile: cfg.CertFile, keyFile: cfg.KeyFile}
		if err := s.files.load(time.Now(), logger); err != nil {
			return nil, err
		}
		s.tlsConfig = baseTLSConfig()
		s.tlsConfig.GetCertificate = s.files.getCertificate
	case ModeACME:
		s.acme = newACMEManager(cfg)
		s.tlsConfig = s.acme.TLSConfig()
		s.tlsConfig.MinVersion = tls.VersionTLS12
	case ModeSelfSigned:
		hostname, err := os.Hostname()
		if err != nil {
			logger.Warn("web: cannot read the machine host name; the self-signed certificate will not name it", "err", err)
			hostname = ""
		}
		cert, err := loadOrCreateSelfSigned(cfg.DataDir, selfSignedNames(hostname, cfg.Listen), time.Now(), logger)
		if err != nil {
			return nil, err
		}
		s.tlsConfig = baseTLSConfig()
		s.tlsConfig.Certificates = []tls.Certificate{cert}
	}

	if metrics != nil && cfg.MetricsToken != "" {
		metrics = requireBearer(metrics, cfg.MetricsToken)
	}
	if cfg.MetricsListen != "" {
		s.metrics = s.metricsRoutes(metrics)
		metrics = nil
	}
	s.handler = s.routes(ws, metrics)
	return s, nil
}

// mode validates the TLS-related fields of cfg and returns the mode they
// select.
func (cfg Config) mode() (Mode, error) {
	files := cfg.CertFile != "" || cfg.KeyFile != ""
	acme := len(cfg.ACMEDomains) > 0
	switch {
	case files && (cfg.CertFile == "" || cfg.KeyFile == ""):
		return "", errors.New("web: certificate files need both a certificate file and a key file")
	case files && acme:
		return "", errors.New("web: choose either certificate files or ACME, not both")
	case cfg.PlainHTTP && (files || acme):
		return "", errors.New("web: plain HTTP cannot be combined with certificate files or ACME")
	case files:
		return ModeCertFiles, nil
	case acme:
		for _, d := range cfg.ACMEDomains {
			if strings.TrimSpace(d) == "" || strings.ContainsAny(d, "/: ") {
				return "", fmt.Errorf("web: invalid ACME domain %q", d)
			}
		}
		if cfg.DataDir == "" {
			return "", errors.New("web: ACME needs a data folder for its certificate cache")
		}
		return ModeACME, nil
	case cfg.PlainHTTP:
		return ModePlainHTTP, nil
	default:
		if cfg.DataDir == "" {
			return "", errors.New("web: a self-signed certificate needs a data folder to be kept in")
		}
		return ModeSelfSigned, nil
	}
}

// Mode reports the TLS mode chosen from the Config.
func (s *Server) Mode() Mode { return s.mode }

// Handler returns the complete handler tree (routes, security headers and
// request logging) as served on the main listener.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the main listener, the metrics listener if one is
// configured and, in ACME mode, the HTTP-01 listener.
// Calling it before Run lets the caller learn Addr and URL when the
// configured port is 0; Run calls it itself otherwise. Calling it again after
// success does nothing.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("web: listen on %s: %w", s.cfg.Listen, err)
	}
	if s.mode == ModeACME {
		httpLn, err := net.Listen("tcp", s.cfg.ACMEHTTPListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("web: listen on %s for ACME HTTP-01 challenges: %w", s.cfg.ACMEHTTPListen, err)
		}
		s.httpLn = httpLn
	}
	if s.cfg.MetricsListen != "" {
		metricsLn, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			ln.Close()
			if s.httpLn != nil {
				s.httpLn.Close()
				s.httpLn = nil
			}
			return fmt.Errorf("web: listen on %s for metrics: %w", s.cfg.MetricsListen, err)
		}
		s.metricsLn = metricsLn
	}
	s.ln = ln
	return nil
}

// Addr returns the address of the main listener, or nil before Listen (or
// Run) has bound it.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// MetricsAddr returns the address of the metrics listener, or nil when
// there is none or Listen has not bound it yet.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// URL returns the address a person should open, such as
// "https://localhost:8443/": the first ACME domain in ACME mode, otherwise
// the listening host, with "localhost" standing for a wildcard address. The
// port is the one actually bound once Listen has run, and is left out when it
// is the scheme's default. In plain-HTTP mode it is the proxy's upstream
// address, not the public one.
func (s *Server) URL() string {
	scheme, defPort := "https", "443"
	if s.mode == ModePlainHTTP {
		scheme, defPort = "http", "80"
	}
	host, port, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		host, port = "", ""
	}
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		port = fmt.Sprint(a.Port)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	if s.mode == ModeACME {
		host = strings.ToLower(strings.TrimSpace(s.cfg.ACMEDomains[0]))
	}
	hostport := host
	if strings.Contains(host, ":") {
		hostport = "[" + host + "]"
	}
	if port != "" && port != defPort {
		hostport = net.JoinHostPort(host, port)
	}
	return scheme + "://" + hostport + "/"
}

// httpsPort returns the port of the main listener as it should appear in a
// redirect to HTTPS: empty for 443.
func (s *Server) httpsPort() string {
	port := ""
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		port = fmt.Sprint(a.Port)
	} else if _, p, err := net.SplitHostPort(s.cfg.Listen); err == nil {
		port = p
	}
	if port == "443" {
		return ""
	}
	return port
}

// Run serves until ctx is done, then shuts down gracefully: it stops
// accepting connections, tells the WebSocket handlers to end (their request
// context is cancelled), and waits up to Config.ShutdownTimeout for in-flight
// requests and WebSocket handlers to finish. It returns nil after a clean
// shutdown, and an error if a listener fails or the shutdown timed out.
// In certificate-files mode, SIGHUP reloads the certificate while Run runs.
// Run may be called only once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("web: Run called twice")
	}
	s.running = true
	s.mu.Unlock()
	if err := s.Listen(); err != nil {
		return err
	}

	// Registered before serving, so that a SIGHUP sent once the server
	// answers is never the default action (terminating the process).
	var hup chan os.Signal
	if s.files != nil {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}

	errorLog := log.New(serverLogWriter{s.logger}, "", 0)
	main := s.httpServer(s.handler, 64<<10, errorLog)
	main.TLSConfig = s.tlsConfig
	servers := []*http.Server{main}
	errc := make(chan error, 3)
	go func() {
		var err error
		if s.tlsConfig != nil {
			err = main.ServeTLS(s.limited(s.ln), "", "")
		} else {
			err = main.Serve(s.limited(s.ln))
		}
		errc <- err
	}()
	if s.httpLn != nil {
		challenge := s.httpServer(s.acmeHTTPHandler(), 16<<10, errorLog)
		servers = append(servers, challenge)
		go func() { errc <- challenge.Serve(s.limited(s.httpLn)) }()
		s.logger.Info("web: answering ACME HTTP-01 challenges and redirecting to HTTPS", "addr", s.httpLn.Addr().String())
	}
	if s.metricsLn != nil {
		metrics := s.httpServer(s.metrics, 16<<10, errorLog)
		servers = append(servers, metrics)
		go func() { errc <- metrics.Serve(s.limited(s.metricsLn)) }()
		s.logger.Info("web: serving metrics on their own listener", "addr", s.metricsLn.Addr().String())
	}

	if s.mode == ModePlainHTTP {
		s.logger.Warn("web: serving plain HTTP; TLS must be terminated by a reverse proxy in front of this server, " +
			"browsers refuse camera and microphone to plain-HTTP pages other than localhost")
	}
	s.logger.Info("web: listening", "url", s.URL(), "addr", s.ln.Addr().String(), "mode", string(s.mode))

	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			serveErr = fmt.Errorf("web: serve: %w", err)
			break loop
		case <-hup:
			if err := s.files.load(time.Now(), s.logger); err != nil {
				s.logger.Error("web: certificate reload failed; keeping the previous certificate", "err", err)
			} else {
				s.logger.Info("web: certificate reloaded", "cert", s.cfg.CertFile)
			}
		}
	}
	if err := s.shutdown(servers); err != nil {
		return errors.Join(serveErr, err)
	}
	return serveErr
}

// httpServer returns a server of h with the timeouts and connection caps
// of the Config, reading request headers of up to maxHeaderBytes.
func (s *Server) httpServer(h http.Handler, maxHeaderBytes int, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(readHeaderTimeout, s.cfg.ReadTimeout),
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errorLog,
		ConnContext:       connContext,
		ConnState:         connState,
	}
}

// limited counts ln's connections against the Config's caps (see
// Config.MaxConnsPerClient); all listeners share one count.
func (s *Server) limited(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, conns: s.conns, byClient: !s.cfg.TrustProxy, refused: s.refused}
}

// shutdown stops servers gracefully within Config.ShutdownTimeout, closing
// them forcibly when it runs out.
func (s *Server) shutdown(servers []*http.Server) error {
	s.logger.Info("web: shutting down", "timeout", s.cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	s.drain()

	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("web: graceful shutdown: %w", err))
			srv.Close()
		}
	}
	if len(errs) == 0 {
		// Every request that could still enter a WebSocket handler has done
		// so; wait for those handlers, which are not tracked by Shutdown.
		done := make(chan struct{})
		go func() { s.sessions.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, errors.New("web: graceful shutdown: WebSocket handlers still running after the timeout"))
		}
	}
	return errors.Join(errs...)
}

// serverLogWriter carries net/http's own error log into slog. Most of it is
// TLS handshake noise from scanners, kept at Debug; a panic in a handler is
// an error and is logged as one.
type serverLogWriter struct{ logger *slog.Logger }

func (w serverLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	if strings.Contains(line, "panic") {
		level = slog.LevelError
	}
	w.logger.Log(context.Background(), level, "web: http server: "+line)
	return len(p), nil
}
