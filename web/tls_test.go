package web

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// readLeaf parses the first certificate of a PEM file.
func readLeaf(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM block", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSelfSignedCreatedThenReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	newServer(t, Config{DataDir: dir})

	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatalf("no certificate written: %v", err)
	}
	info, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("no key written: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key.pem mode = %v, want 0600", perm)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data folder mode = %v (%v), want 0700", info.Mode().Perm(), err)
	}

	leaf := readLeaf(t, certFile)
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key = %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.IsCA {
		t.Errorf("the certificate is a CA; browsers refuse a CA certificate as a server certificate")
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate does not cover %s: %v", name, err)
		}
	}
	if h, err := os.Hostname(); err == nil && isDNSName(h) {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("certificate does not cover the host name %s: %v", h, err)
		}
	}
	if validity := leaf.NotAfter.Sub(leaf.NotBefore); validity < 360*24*time.Hour || validity > 370*24*time.Hour {
		t.Errorf("validity = %v, want about a year", validity)
	}

	newServer(t, Config{DataDir: dir})
	second, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Errorf("second start replaced a valid certificate")
	}
	if readLeaf(t, certFile).SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("serial changed on the second start")
	}
}

func TestSelfSignedRegenerated(t *testing.T) {
	names := selfSignedNames("", "127.0.0.1:0")
	cases := []struct {
		name    string
		prepare func(t *testing.T, dir string)
	}{
		{"expired", func(t *testing.T, dir string) {
			writePair(t, dir, "", names, time.Now().Add(-2*365*24*time.Hour))
		}},
		{"expiring within the renewal window", func(t *testing.T, dir string) {
			writePair(t, dir, "", names, time.Now().Add(-350*24*time.Hour))
		}},
		{"certificate unreadable", func(t *testing.T, dir string) {
			writePair(t, dir, "", names, time.Now())
			os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("garbage"), 0o644)
		}},
		{"key missing", func(t *testing.T, dir string) {
			writePair(t, dir, "", names, time.Now())
			os.Remove(filepath.Join(dir, "key.pem"))
		}},
		{"key of another certificate", func(t *testing.T, dir string) {
			writePair(t, dir, "", names, time.Now())
			other := t.TempDir()
			_, otherKey := writePair(t, other, "", names, time.Now())
			data, _ := os.ReadFile(otherKey)
			os.WriteFile(filepath.Join(dir, "key.pem"), data, 0o600)
		}},
		{"a required name missing", func(t *testing.T, dir string) {
			writePair(t, dir, "", []string{"localhost"}, time.Now())
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.prepare(t, dir)
			before, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
			if _, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0"}, nil, nil, testLogger(t)); err != nil {
				t.Fatalf("New: %v", err)
			}
			after, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(before, after) {
				t.Fatalf("certificate was not regenerated")
			}
			if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")); err != nil {
				t.Fatalf("regenerated pair unusable: %v", err)
			}
			if leaf := readLeaf(t, filepath.Join(dir, "cert.pem")); time.Until(leaf.NotAfter) < 360*24*time.Hour {
				t.Errorf("regenerated certificate expires on %v", leaf.NotAfter)
			}
		})
	}
}

func TestSelfSignedNames(t *testing.T) {
	cases := []struct {
		hostname, listen string
		want             []string
	}{
		{"", ":8443", []string{"localhost", "127.0.0.1", "::1"}},
		{"Box.lan.", ":8443", []string{"localhost", "127.0.0.1", "::1", "box.lan"}},
		{"localhost", "", []string{"localhost", "127.0.0.1", "::1"}},
		{"bad_name", ":8443", []string{"localhost", "127.0.0.1", "::1"}},
		{"box", "192.168.1.20:8443", []string{"localhost", "127.0.0.1", "::1", "box", "192.168.1.20"}},
		{"box", "[::]:8443", []string{"localhost", "127.0.0.1", "::1", "box"}},
	}
	for _, c := range cases {
		if got := selfSignedNames(c.hostname, c.listen); !slices.Equal(got, c.want) {
			t.Errorf("selfSignedNames(%q, %q) = %v, want %v", c.hostname, c.listen, got, c.want)
		}
	}
}

// TestSelfSignedHandshake serves over TLS and connects with a client that
// trusts only the generated certificate, under each name it covers.
func TestSelfSignedHandshake(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, newServer(t, Config{DataDir: dir}))
	if !strings.HasPrefix(srv.URL(), "https://127.0.0.1:") {
		t.Errorf("URL = %q, want https://127.0.0.1:PORT/", srv.URL())
	}
	client := trustingClient(t, filepath.Join(dir, "cert.pem"))
	port := srv.Addr().(*net.TCPAddr).Port
	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			resp, err := client.Get("https://" + net.JoinHostPort(host, itoa(port)) + "/healthz")
			if err != nil {
				t.Fatalf("GET /healthz: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(body), "ok") {
				t.Errorf("status %d body %q", resp.StatusCode, body)
			}
			if resp.Header.Get("Strict-Transport-Security") == "" {
				t.Errorf("no HSTS over TLS")
			}
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Errorf("connection state %+v", resp.TLS)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", resp.Proto)
			}
		})
	}
	// An untrusting client must fail.
	if _, err := http.Get(srv.URL() + "healthz"); err == nil {
		t.Errorf("a client that does not trust the certificate connected")
	}
}

func TestCertFilesMode(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "site-", []string{"localhost", "127.0.0.1"}, time.Now())
	srv := start(t, newServer(t, Config{CertFile: certFile, KeyFile: keyFile}))
	if srv.Mode() != ModeCertFiles {
		t.Fatalf("mode = %s", srv.Mode())
	}
	resp, err := trustingClient(t, certFile).Get(srv.URL() + "r/abc")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("status %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if got := resp.TLS.PeerCertificates[0]; !got.Equal(readLeaf(t, certFile)) {
		t.Errorf("served certificate is not the one in the file")
	}
}

func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "", []string{"localhost"}, time.Now())
	files := &certFiles{certFile: certFile, keyFile: keyFile}
	if err := files.load(time.Now(), testLogger(t)); err != nil {
		t.Fatal(err)
	}
	first, _ := files.getCertificate(nil)

	// A failed reload keeps the current certificate.
	os.WriteFile(certFile, []byte("half-written"), 0o644)
	if err := files.load(time.Now(), testLogger(t)); err == nil {
		t.Fatalf("loading a broken file succeeded")
	}
	if cur, _ := files.getCertificate(nil); cur != first {
		t.Errorf("a failed reload replaced the certificate")
	}

	writePair(t, dir, "", []string{"localhost"}, time.Now())
	if err := files.load(time.Now(), testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if cur, _ := files.getCertificate(nil); cur == first || !cur.Leaf.Equal(readLeaf(t, certFile)) {
		t.Errorf("reload did not pick up the new certificate")
	}
}

func TestCertFilesMissing(t *testing.T) {
	_, err := New(Config{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/cert.pem") {
		t.Errorf("New with missing files: %v, want an error naming the file", err)
	}
}

func TestPlainMode(t *testing.T) {
	srv := start(t, newServer(t, Config{PlainHTTP: true}))
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
		t.Errorf("URL = %q", srv.URL())
	}
	resp, err := http.Get("http://" + srv.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS != nil {
		t.Errorf("status %d, TLS %v", resp.StatusCode, resp.TLS)
	}
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Errorf("HSTS sent over plain HTTP")
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("no CSP in plain mode")
	}
}

func acmeServer(t *testing.T, listen string) *Server {
	t.Helper()
	s, err := New(Config{
		Listen:         listen,
		ACMEHTTPListen: "127.0.0.1:0",
		ACMEDomains:    []string{"Chat.Example.org", "call.example.org"},
		ACMEEmail:      "ops@example.org",
		DataDir:        t.TempDir(),
	}, marker("ws"), marker("metrics"), testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestACMEManager(t *testing.T) {
	s := acmeServer(t, ":443")
	if s.Mode() != ModeACME {
		t.Fatalf("mode = %s", s.Mode())
	}
	for host, allowed := range map[string]bool{
		"chat.example.org":     true,
		"call.example.org":     true,
		"example.org":          false,
		"evil.example.com":     false,
		"www.chat.example.org": false,
	} {
		err := s.acme.HostPolicy(context.Background(), host)
		if allowed != (err == nil) {
			t.Errorf("HostPolicy(%q) = %v, want allowed=%v", host, err, allowed)
		}
	}
	if want := autocert.DirCache(filepath.Join(s.cfg.DataDir, "acme")); s.acme.Cache != want {
		t.Errorf("cache = %v, want %v", s.acme.Cache, want)
	}
	if s.acme.Email != "ops@example.org" {
		t.Errorf("email = %q", s.acme.Email)
	}
	if !slices.Contains(s.tlsConfig.NextProtos, "acme-tls/1") || s.tlsConfig.GetCertificate == nil {
		t.Errorf("TLS config does not answer TLS-ALPN-01: %v", s.tlsConfig.NextProtos)
	}
	if s.URL() != "https://chat.example.org/" {
		t.Errorf("URL = %q", s.URL())
	}
}

func TestACMEHTTPRedirect(t *testing.T) {
	cases := []struct {
		name, listen, method, host, target string
		wantStatus                         int
		wantLocation                       string
	}{
		{"to 443 without port", ":443", "GET", "chat.example.org", "/r/abc?x=1", 308, "https://chat.example.org/r/abc?x=1"},
		{"host with port and capitals", ":443", "GET", "CHAT.example.org:80", "/", 308, "https://chat.example.org/"},
		{"second domain", ":443", "HEAD", "call.example.org", "/join/xyz", 308, "https://call.example.org/join/xyz"},
		{"to a custom port", ":8443", "GET", "chat.example.org", "/a", 308, "https://chat.example.org:8443/a"},
		{"unknown host", ":443", "GET", "evil.example.com", "/", 404, ""},
		{"POST is refused", ":443", "POST", "chat.example.org", "/", 400, ""},
		{"unknown challenge token", ":443", "GET", "chat.example.org", "/.well-known/acme-challenge/nothing", 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := acmeServer(t, c.listen).acmeHTTPHandler()
			req, _ := http.NewRequest(c.method, "http://"+c.host+c.target, nil)
			req.Host = c.host
			rec := doRequest(h, req)
			if rec.Code != c.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, c.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("Location"); got != c.wantLocation {
				t.Errorf("Location = %q, want %q", got, c.wantLocation)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("no security headers on the HTTP port")
			}
			if rec.Header().Get("Strict-Transport-Security") != "" {
				t.Errorf("HSTS on the plain-HTTP port")
			}
		})
	}
}

// TestACMEListensOnBothPorts checks that Run serves the redirect on the
// HTTP-01 port and uses the port actually bound for HTTPS. No ACME CA is
// reachable, so the HTTPS side is not exercised.
func TestACMEListensOnBothPorts(t *testing.T) {
	srv := start(t, acmeServer(t, "127.0.0.1:0"))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+srv.httpLn.Addr().String()+"/r/abc", nil)
	req.Host = "chat.example.org"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "https://chat.example.org:" + itoa(srv.Addr().(*net.TCPAddr).Port) + "/r/abc"
	if resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("status %d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}
