//go:build unix

package web

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReloadsCertificate replaces the certificate files of a running
// server and sends SIGHUP: new connections must get the new certificate.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "", []string{"localhost", "127.0.0.1"}, time.Now())
	srv := start(t, newServer(t, Config{CertFile: certFile, KeyFile: keyFile}))

	// get connects with a client trusting the current content of certFile.
	get := func() (*http.Response, error) {
		resp, err := trustingClient(t, certFile).Get(srv.URL() + "healthz")
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		return resp, nil
	}
	resp, err := get()
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	old := resp.TLS.PeerCertificates[0]

	writePair(t, dir, "", []string{"localhost", "127.0.0.1"}, time.Now())
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Until the reload, the handshake fails: the client trusts the new
		// certificate only.
		if resp, err := get(); err == nil {
			if cur := resp.TLS.PeerCertificates[0]; !cur.Equal(old) && cur.Equal(readLeaf(t, certFile)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not served after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
