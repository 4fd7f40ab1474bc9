package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// marker answers with a fixed body, to tell which handler a request reached.
func marker(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	})
}

// testLogger logs at debug level into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newServer builds a server with marker handlers on /ws and /metrics.
func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	s, err := New(cfg, marker("ws reached"), marker("metrics reached"), testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// plainConfig and selfSignedConfig are the two modes used by handler tests.
func plainConfig(t *testing.T) Config { return Config{PlainHTTP: true} }
func selfSignedConfig(t *testing.T) Config {
	return Config{DataDir: t.TempDir()}
}

// running is a server started with Run in the background.
type running struct {
	*Server
	stop func() error // cancels Run's context and returns Run's result
}

// start binds s, runs it, and stops it at the end of the test.
func start(t *testing.T, s *Server) *running {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after its context was cancelled")
			return nil
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &running{Server: s, stop: stop}
}

// trustingClient returns an HTTP client that trusts only the PEM
// certificate in certFile.
func trustingClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("no certificate in %s", certFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// writePair generates a certificate for names and writes it and its key to
// dir, returning their paths.
func writePair(t *testing.T, dir, prefix string, names []string, now time.Time) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := generateSelfSigned(names, now)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, prefix+"cert.pem")
	keyFile = filepath.Join(dir, prefix+"key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
