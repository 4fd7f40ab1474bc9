//go:build linux

package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// dialFrom opens a TLS connection to p from the loopback address from,
// offering HTTP/1.1, and completes the handshake within replyTimeout.
func (p *proc) dialFrom(from string) (*tls.Conn, error) {
	u, err := url.Parse(p.url)
	if err != nil {
		p.t.Fatal(err)
	}
	d := net.Dialer{Timeout: replyTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	raw, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	cfg := p.tlsConfig()
	cfg.ServerName, cfg.NextProtos = u.Hostname(), []string{"http/1.1"}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(replyTimeout))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// healthz sends GET /healthz on c and returns the response status.
func healthz(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(replyTimeout))
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDescriptorLimitKeepsServingTLS runs the server with 256 file
// descriptors, as the attack review did, with its default caps. One address
// opens connection after connection, each sending a request that announces
// a body and never sends it; the server takes in only its cap's worth (and
// the few it answers 429), closes the others before their TLS handshake,
// and another address still completes TLS handshakes and gets /healthz.
func TestDescriptorLimitKeepsServingTLS(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	// Timeouts far longer than the test, so that no held connection is
	// closed (and its slot freed) while it runs, however slowly.
	p := startVia(t, []string{prlimit, "--nofile=256"}, t.TempDir(), nil,
		"-http-read-timeout", "10m", "-http-write-timeout", "10m")

	const attempts = 300 // more than the process has descriptors
	held, refused := 0, 0
	for range attempts {
		c, err := p.dialFrom("127.0.0.1")
		if err != nil {
			refused++
			continue
		}
		defer c.Close()
		held++
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n")
	}
	if held >= 200 || refused == 0 {
		t.Fatalf("one address held %d connections and was refused %d; want it refused well before the descriptor limit", held, refused)
	}
	t.Logf("one address: %d connections held, %d refused before the TLS handshake", held, refused)

	for i := range 5 {
		c, err := p.dialFrom("127.0.0.2")
		if err != nil {
			t.Fatalf("another address, connection %d: TLS handshake: %v", i, err)
		}
		if code := healthz(t, c); code != http.StatusOK {
			t.Errorf("another address, connection %d: GET /healthz: %d, want 200", i, code)
		}
		c.Close()
	}

	c, err := p.dialFrom("127.0.0.2")
	if err != nil {
		t.Fatalf("another address: TLS handshake: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(replyTimeout))
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`lepeerchat_http_refused_total{reason="closed"} %d`, refused); !strings.Contains(string(body), want+"\n") {
		t.Errorf("/metrics does not say %q", want)
	}
}

// TestBodylessRequestClosedWithinReadTimeout sends a request announcing a
// body it never sends to the binary with short HTTP timeouts, over TLS and
// in plain HTTP: the server ends the connection, while a signalling
// WebSocket opened before it, older than both timeouts by then, still
// answers.
func TestBodylessRequestClosedWithinReadTimeout(t *testing.T) {
	for _, args := range [][]string{nil, {"-http"}} {
		t.Run(strings.Join(append([]string{"mode"}, args...), " "), func(t *testing.T) {
			p := start(t, t.TempDir(), nil, append(args, "-http-read-timeout", "500ms", "-http-write-timeout", "500ms")...)
			ws := p.dial()
			m := ws.createRoom("Timeouts", "Ann")

			u, _ := url.Parse(p.url)
			var c net.Conn
			var err error
			if u.Scheme == "https" {
				c, err = p.dialFrom("127.0.0.1")
			} else {
				c, err = net.Dial("tcp", u.Host)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n")
			// Far below the default timeouts: a close before it is the
			// configured one at work.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the server still held the connection after 5 s")
			}

			ws.status(m)
		})
	}
}

// getWith fetches rawURL with an optional Authorization header and returns
// the status and body.
func (p *proc) getWith(rawURL, auth string) (int, string) {
	p.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		p.t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestMetricsRestricted checks -metrics-token (set, as the README advises,
// through its variable) on the main listener and -metrics-listen with it.
func TestMetricsRestricted(t *testing.T) {
	const token = "scrape-token-1234"
	env := []string{"LEPEERCHAT_METRICS_TOKEN=" + token}

	t.Run("token on the main listener", func(t *testing.T) {
		p := start(t, t.TempDir(), env)
		if code, _ := p.getWith(p.url+"metrics", ""); code != http.StatusUnauthorized {
			t.Errorf("/metrics without the token: %d, want 401", code)
		}
		if code, _ := p.getWith(p.url+"metrics", "Bearer wrong"); code != http.StatusUnauthorized {
			t.Errorf("/metrics with a wrong token: %d, want 401", code)
		}
		if code, body := p.getWith(p.url+"metrics", "Bearer "+token); code != http.StatusOK || !strings.Contains(body, "lepeerchat_rooms") {
			t.Errorf("/metrics with the token: %d %.80q", code, body)
		}
	})

	t.Run("own listener", func(t *testing.T) {
		p := start(t, t.TempDir(), env, "-metrics-listen", "127.0.0.1:0")
		line := p.waitLog("the metrics listener", startTimeout, func(l string) bool {
			return strings.Contains(l, "serving metrics on their own listener")
		})
		metricsURL := "http://" + logAttr(line, "addr") + "/metrics"
		if code, _ := p.getWith(p.url+"metrics", "Bearer "+token); code != http.StatusNotFound {
			t.Errorf("main listener /metrics: %d, want 404", code)
		}
		if code, _ := p.getWith(metricsURL, ""); code != http.StatusUnauthorized {
			t.Errorf("metrics listener without the token: %d, want 401", code)
		}
		if code, body := p.getWith(metricsURL, "Bearer "+token); code != http.StatusOK || !strings.Contains(body, "lepeerchat_rooms") {
			t.Errorf("metrics listener with the token: %d %.80q", code, body)
		}
	})
}
