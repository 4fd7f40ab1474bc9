//go:build unix

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"lepeerchat/store/redisstore/redistest"
	"lepeerchat/turn"
	"lepeerchat/turn/turntest"
)

// TestBinaryGivesMembersTURNCredentials checks the wiring of the built-in
// STUN/TURN server in the binary: it starts by default, the joined reply
// carries its URLs (at the host the client reached) with credentials for
// the member, those verify with the secret kept in the data folder, and
// they open a real allocation on the server.
func TestBinaryGivesMembersTURNCredentials(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	p := start(t, dataDir, nil, "-http", "-turn-public-ip", "127.0.0.1")
	line := p.waitLog("the STUN/TURN server", startTimeout, func(l string) bool { return strings.Contains(l, "STUN/TURN server listening") })
	port := logAttr(line, "port")
	if port == "" || port == "0" || logAttr(line, "relay-ip") != "127.0.0.1" {
		t.Fatalf("TURN log line %q", line)
	}

	r := p.dial().mustCall("create", map[string]any{"room": "Relay", "name": "Ann"}, "joined")
	memberID := r.obj("self").str("id")
	servers, _ := r["iceServers"].([]any)
	if len(servers) != 2 {
		t.Fatalf("iceServers %v, want the STUN and the TURN entry", r["iceServers"])
	}
	stun, _ := servers[0].(map[string]any)
	turnEntry := msg(servers[1].(map[string]any))
	if urls, _ := stun["urls"].([]any); len(urls) != 1 || urls[0] != "stun:127.0.0.1:"+port {
		t.Errorf("STUN entry %v", stun)
	}
	urls, _ := turnEntry["urls"].([]any)
	if len(urls) != 2 || urls[0] != "turn:127.0.0.1:"+port+"?transport=udp" || urls[1] != "turn:127.0.0.1:"+port+"?transport=tcp" {
		t.Errorf("TURN URLs %v", urls)
	}
	exp, err := time.Parse(time.RFC3339, r.str("iceExpires"))
	if err != nil || time.Until(exp) < 3*time.Hour || time.Until(exp) > 4*time.Hour {
		t.Errorf("iceExpires %q: want the default 4 h lifetime", r.str("iceExpires"))
	}

	secretPath := filepath.Join(dataDir, turn.SecretFile)
	fi, err := os.Stat(secretPath)
	if err != nil {
		t.Fatalf("no secret in the data folder: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", secretPath, fi.Mode().Perm())
	}
	secret, err := turn.LoadOrCreateSecret(dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	user, cred := turnEntry.str("username"), turnEntry.str("credential")
	if m, err := turn.Verify(secret, user, cred, time.Now()); err != nil || m != memberID {
		t.Fatalf("credentials %s / %s: member %q, %v; want %s", user, cred, m, err, memberID)
	}

	// The credentials open an allocation on the process's TURN server.
	a, err := allocateAt(t, port, user, cred)
	if err != nil {
		t.Fatalf("allocate with the minted credentials: %v", err)
	}
	if ra, ok := a.(*net.UDPAddr); !ok || ra.IP.String() != "127.0.0.1" || ra.Port < turn.DefaultMinRelayPort {
		t.Errorf("relay address %v", a)
	}

	// A restart keeps the secret, so that credentials given out before it
	// stay good.
	p.signal(syscall.SIGTERM)
	if code := p.wait(exitTimeout); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	start(t, dataDir, nil, "-http")
	again, err := turn.LoadOrCreateSecret(dataDir, nil)
	if err != nil || again != secret {
		t.Errorf("the secret changed across a restart (%v)", err)
	}
}

// TestBinaryWithExternalICEServers runs with the built-in server off and an
// external list: browsers get exactly that list, with credentials minted
// for the TURN entries with the shared secret given by the environment.
func TestBinaryWithExternalICEServers(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	const secret = "cluster-wide-secret-0123456789"
	p := start(t, dataDir, []string{"LEPEERCHAT_TURN_SECRET=" + secret}, "-http", "-turn=false",
		"-ice-servers", "stun:stun.example.org:3478,turn:coturn.example.org:3478?transport=udp")
	r := p.dial().mustCall("create", map[string]any{"room": "External", "name": "Ann"}, "joined")
	servers, _ := r["iceServers"].([]any)
	if len(servers) != 2 {
		t.Fatalf("iceServers %v", r["iceServers"])
	}
	s0, s1 := msg(servers[0].(map[string]any)), msg(servers[1].(map[string]any))
	if s0.str("username") != "" {
		t.Errorf("STUN entry with credentials: %v", s0)
	}
	if m, err := turn.Verify(secret, s1.str("username"), s1.str("credential"), time.Now()); err != nil || m != r.obj("self").str("id") {
		t.Errorf("external TURN credentials do not verify with the shared secret: %v %v", s1, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, turn.SecretFile)); err == nil {
		t.Error("a secret file was made although the secret was given")
	}
	if out := p.log.String(); strings.Contains(out, "STUN/TURN server listening") {
		t.Errorf("the built-in server started with -turn=false:\n%s", out)
	}
}

// TestBinaryRefusesTURNOverTLSWithoutCertificate checks that TURN over TLS
// without certificate files stops the start with a clear message.
func TestBinaryRefusesTURNOverTLSWithoutCertificate(t *testing.T) {
	t.Parallel()
	p := launch(t, nil, "-listen", "127.0.0.1:0", "-http", "-data", filepath.Join(t.TempDir(), "data"), "-turn-tls-listen", "127.0.0.1:0")
	if code := p.wait(exitTimeout); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if out := p.log.String(); !strings.Contains(out, "-turn-tls-listen needs -tls-cert") {
		t.Errorf("output does not explain: %s", out)
	}
}

// writeCert writes a fresh self-signed certificate for 127.0.0.1 and its
// key as PEM files and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestCertReloaderFollowsTheFiles checks that TURN over TLS picks up a
// renewed certificate without a restart.
func TestCertReloaderFollowsTheFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile)
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	got, err := r.GetCertificate(nil)
	if err != nil || !got.Leaf.Equal(first) {
		t.Fatalf("first load: %v", err)
	}
	second := writeCert(t, certFile, keyFile)
	later := time.Now().Add(time.Minute)
	os.Chtimes(certFile, later, later)
	if got, err := r.GetCertificate(nil); err != nil || !got.Leaf.Equal(second) {
		t.Fatalf("after renewal: %v; same certificate: %v", err, got != nil && got.Leaf.Equal(first))
	}
	// A half-written renewal keeps the previous certificate.
	os.WriteFile(keyFile, []byte("garbage"), 0o600)
	evenLater := later.Add(time.Minute)
	os.Chtimes(keyFile, evenLater, evenLater)
	if got, err := r.GetCertificate(nil); err != nil || !got.Leaf.Equal(second) {
		t.Fatalf("with a broken key file: %v", err)
	}
}

// TestBinaryTURNOverTLS runs the binary with certificate files and a TURN
// over TLS port: browsers get a turns: URL, and an allocation over TLS with
// the minted credentials succeeds.
func TestBinaryTURNOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert := writeCert(t, certFile, keyFile)
	p := launch(t, nil, "-listen", "127.0.0.1:0", "-data", filepath.Join(dir, "data"), "-tls-cert", certFile, "-tls-key", keyFile,
		"-turn-tls-listen", "127.0.0.1:0", "-turn-public-ip", "127.0.0.1")
	line := p.waitLog("the STUN/TURN server", startTimeout, func(l string) bool { return strings.Contains(l, "STUN/TURN server listening") })
	tlsPort := logAttr(line, "tls-port")
	if tlsPort == "" {
		t.Fatalf("no TLS port in %q", line)
	}
	p.url = logAttr(p.waitLog("the running message", startTimeout, func(l string) bool { return strings.Contains(l, "lepeerchat is running") }), "url")
	p.dataDir = dir // where the client finds cert.pem to trust
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	r := p.dial().mustCall("create", map[string]any{"room": "TLS", "name": "Ann"}, "joined")
	servers, _ := r["iceServers"].([]any)
	if len(servers) != 2 {
		t.Fatalf("iceServers %v", r["iceServers"])
	}
	entry := msg(servers[1].(map[string]any))
	urls, _ := entry["urls"].([]any)
	want := "turns:127.0.0.1:" + tlsPort + "?transport=tcp"
	if len(urls) != 3 || urls[2] != want {
		t.Fatalf("TURN URLs %v, want the last %s", urls, want)
	}

	conn, err := tls.Dial("tcp", "127.0.0.1:"+tlsPort, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer conn.Close()
	if _, err := turntest.Allocate(t, pionturn.NewSTUNConn(conn), "127.0.0.1:"+tlsPort, entry.str("username"), entry.str("credential")); err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
}

// turnPort returns the port of p's built-in STUN/TURN server, from its log.
func turnPort(p *proc) string {
	line := p.waitLog("the STUN/TURN server", startTimeout, func(l string) bool { return strings.Contains(l, "STUN/TURN server listening") })
	return logAttr(line, "port")
}

// credentialsOf returns the TURN username and password of a joined reply.
func credentialsOf(t *testing.T, joined msg) (user, pass string) {
	t.Helper()
	servers, _ := joined["iceServers"].([]any)
	for _, s := range servers {
		if e := msg(s.(map[string]any)); e.str("username") != "" {
			return e.str("username"), e.str("credential")
		}
	}
	t.Fatalf("no TURN credentials in %v", joined["iceServers"])
	return "", ""
}

// allocateAt asks the TURN server on 127.0.0.1:port, over UDP, for a relay
// with the credentials, and releases it at once; it returns the relay's
// address.
func allocateAt(t *testing.T, port, user, pass string) (net.Addr, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return turntest.Allocate(t, conn, "127.0.0.1:"+port, user, pass)
}

// kickedGuest makes a room on owner's process, has a guest join it on
// guest's process, calls before with the guest's TURN credentials, then has
// the owner kick the guest and returns the credentials.
func kickedGuest(t *testing.T, owner, guest *proc, before func(user, pass string)) (user, pass string) {
	t.Helper()
	ann := owner.dial()
	room := ann.createRoom("Kick", "Ann")
	token := ann.mustCall("invite", nil, "invite").obj("invite").str("token")
	joined := guest.dial().mustCall("join", map[string]any{"room": room.room, "invite": token, "name": "Bob"}, "joined")
	user, pass = credentialsOf(t, joined)
	before(user, pass)
	ann.mustCall("kick", map[string]any{"member": joined.obj("self").str("id")}, "ok")
	return user, pass
}

// TestBinaryKickedMemberStaysRefusedAfterARestart kicks a member, restarts
// the process over the same data folder, and tries the TURN credentials
// the member was given before the kick: the new process refuses them.
func TestBinaryKickedMemberStaysRefusedAfterARestart(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"-http", "-turn-public-ip", "127.0.0.1"}
	p := start(t, dataDir, nil, args...)
	port := turnPort(p)
	user, pass := kickedGuest(t, p, p, func(user, pass string) {
		if _, err := allocateAt(t, port, user, pass); err != nil {
			t.Fatalf("the guest's credentials open no relay before the kick: %v", err)
		}
	})
	if _, err := allocateAt(t, port, user, pass); err == nil {
		t.Fatal("the kicked guest's credentials opened a relay")
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(exitTimeout); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	p = start(t, dataDir, nil, args...)
	port = turnPort(p)
	if _, err := allocateAt(t, port, user, pass); err == nil {
		t.Error("after a restart, the kicked guest's credentials opened a relay")
	}
	// The restarted process relays the others.
	joined := p.dial().mustCall("create", map[string]any{"room": "After", "name": "Cy"}, "joined")
	cu, cp := credentialsOf(t, joined)
	if _, err := allocateAt(t, port, cu, cp); err != nil {
		t.Errorf("a new member's credentials open no relay after the restart: %v", err)
	}
}

// TestBinaryKickOnOneNodeIsRefusedOnAnother runs two nodes sharing one
// Redis (and the TURN secret): a guest who joined through node two is
// kicked by the owner on node one, and node two's relay refuses the
// credentials it gave the guest. Before the kick the credentials are tried
// on node one, so that node two holds no "not revoked" answer from Redis:
// one it held would spare it the look-up for up to 5 s (turn's
// TestRevocationSpansTheCluster covers that window).
func TestBinaryKickOnOneNodeIsRefusedOnAnother(t *testing.T) {
	t.Parallel()
	redis := redistest.Start(t, false)
	secret := []string{"LEPEERCHAT_TURN_SECRET=a-shared-secret-of-two-nodes"}
	args := []string{"-http", "-turn-public-ip", "127.0.0.1", "-redis", redis.URL()}
	one := start(t, t.TempDir(), secret, append(args, "-node", "one")...)
	two := start(t, t.TempDir(), secret, append(args, "-node", "two")...)
	port := turnPort(two)
	user, pass := kickedGuest(t, one, two, func(user, pass string) {
		if _, err := allocateAt(t, turnPort(one), user, pass); err != nil {
			t.Fatalf("the guest's credentials open no relay before the kick: %v", err)
		}
	})
	if _, err := allocateAt(t, port, user, pass); err == nil {
		t.Error("node two gave a relay to a guest kicked on node one")
	}
	if _, err := allocateAt(t, turnPort(one), user, pass); err == nil {
		t.Error("node one gave a relay to the guest it kicked")
	}
}
