package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
)

const testSecret = "a-test-secret-of-enough-length"

// Relay ports in tests sit above Linux's ephemeral range (32768–60999), so
// that a socket a test opens on an ephemeral port is never a relay port.
const testMinPort, testMaxPort = 61000, 61999

var loopback = netip.MustParseAddr("127.0.0.1")

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// startTURN starts a server on 127.0.0.1 with a random port, relaying from
// 127.0.0.1, changed by opts.
func startTURN(t *testing.T, opts ...func(*Config)) *Server {
	t.Helper()
	s := startUnclosed(t, opts...)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close TURN server: %v", err)
		}
	})
	return s
}

// startUnclosed is startTURN for a test that closes the server itself.
func startUnclosed(t *testing.T, opts ...func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Secret:       testSecret,
		Listen:       "127.0.0.1:0",
		PublicIP:     loopback,
		MinRelayPort: testMinPort,
		MaxRelayPort: testMaxPort,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("start TURN server: %v", err)
	}
	return s
}

// testAddr is the address of the server's listeners, which tests start on
// one loopback address.
func (s *Server) testAddr() string {
	host, _, _ := net.SplitHostPort(s.cfg.Listen)
	return net.JoinHostPort(host, strconv.Itoa(s.Port()))
}

var quietLogs = func() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}()

// turnClient is a pion TURN client over its own UDP socket on loopback.
func turnClient(t *testing.T, s *Server, user, pass string) *pionturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return clientOver(t, s.testAddr(), conn, user, pass)
}

func clientOver(t *testing.T, addr string, conn net.PacketConn, user, pass string) *pionturn.Client {
	t.Helper()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr,
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       user,
		Password:       pass,
		LoggerFactory:  quietLogs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c
}

func mintFor(member string, ttl time.Duration) (string, string) {
	return Mint(testSecret, member, time.Now().Add(ttl))
}

func allocate(t *testing.T, c *pionturn.Client) net.PacketConn {
	t.Helper()
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	t.Cleanup(func() { relay.Close() })
	return relay
}

// exchange sends a datagram from one relay to another and expects it
// there. The receiving relay first sends an "open" datagram the other way:
// a relay delivers only what comes from addresses it has a permission for.
func exchange(t *testing.T, from net.PacketConn, to net.PacketConn, payload string) {
	t.Helper()
	if _, err := to.WriteTo([]byte("open"), from.LocalAddr()); err != nil {
		t.Fatalf("write through relay: %v", err)
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := from.WriteTo([]byte(payload), to.LocalAddr()); err != nil {
			t.Fatalf("write through relay: %v", err)
		}
		to.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, src, err := to.ReadFrom(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == "open" {
				continue
			}
			if string(buf[:n]) != payload {
				t.Fatalf("received %q, want %q", buf[:n], payload)
			}
			if src.String() != from.LocalAddr().String() {
				t.Errorf("datagram from %v, want the sender's relay %v", src, from.LocalAddr())
			}
			return
		}
	}
	t.Fatalf("%q never arrived from %v at %v", payload, from.LocalAddr(), to.LocalAddr())
}

func TestRelayBetweenTwoMembers(t *testing.T) {
	s := startTURN(t)
	ua, pa := mintFor("memberA", time.Hour)
	ub, pb := mintFor("memberB", time.Hour)
	ca, cb := turnClient(t, s, ua, pa), turnClient(t, s, ub, pb)

	// STUN: the server tells a client its address as seen from outside.
	mapped, err := ca.SendBindingRequest()
	if err != nil {
		t.Fatalf("STUN binding: %v", err)
	}
	if m := mapped.(*net.UDPAddr); m.IP.String() != "127.0.0.1" || m.Port == 0 {
		t.Errorf("mapped address %v", mapped)
	}

	ra, rb := allocate(t, ca), allocate(t, cb)
	for _, r := range []net.PacketConn{ra, rb} {
		a := r.LocalAddr().(*net.UDPAddr)
		if a.IP.String() != "127.0.0.1" || a.Port < testMinPort || a.Port > testMaxPort {
			t.Errorf("relay address %v: want 127.0.0.1 and a port in %d-%d", a, testMinPort, testMaxPort)
		}
	}
	// The relay address is the server's public address, allowed as a peer
	// without any -turn-allow-peer: both members are relayed by this server.
	exchange(t, rb, ra, "hello A")
	exchange(t, ra, rb, "hello B")
	if got := s.Allocations("memberA"); got != 1 {
		t.Errorf("memberA holds %d allocations, want 1", got)
	}
	if got := s.AllocationCount(); got != 2 {
		t.Errorf("AllocationCount = %d, want 2", got)
	}
}

func TestBadCredentialsAreRefused(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	s := startTURN(t, func(c *Config) { c.Now = clock.Now })
	good, goodPass := Mint(testSecret, "memberA", clock.Now().Add(time.Hour))
	expired, expiredPass := Mint(testSecret, "memberA", clock.Now().Add(-time.Second))
	forged, forgedPass := Mint("not-the-server-secret-at-all", "memberA", clock.Now().Add(time.Hour))
	for _, tc := range []struct{ name, user, pass string }{
		{"expired", expired, expiredPass},
		{"forged with another secret", forged, forgedPass},
		{"password of another username", "9999999999:memberA", goodPass},
		{"malformed username", "memberA", Password(testSecret, "memberA")},
		{"static username with no expiry", "alice", Password(testSecret, "alice")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := turnClient(t, s, tc.user, tc.pass)
			if relay, err := c.Allocate(); err == nil {
				relay.Close()
				t.Fatalf("allocation with %s credentials succeeded", tc.name)
			}
		})
	}
	if n := s.AllocationCount(); n != 0 {
		t.Fatalf("%d allocations exist after refusals", n)
	}
	// The same server accepts good ones.
	allocate(t, turnClient(t, s, good, goodPass))
}

func TestExpiredCredentialKeepsItsRelayButOpensNoOther(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	s := startTURN(t, func(c *Config) {
		c.Now = clock.Now
		c.RefreshGrace = time.Hour
	})
	user, pass := Mint(testSecret, "memberA", clock.Now().Add(time.Minute))
	c := turnClient(t, s, user, pass)
	allocate(t, c)

	clock.Advance(2 * time.Minute) // the credential has expired
	// The relay made in time can still get permissions (and refreshes).
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 9}); err != nil {
		t.Errorf("permission on a relay whose credential expired since: %v", err)
	}
	// But the credential opens no new relay.
	if relay, err := turnClient(t, s, user, pass).Allocate(); err == nil {
		relay.Close()
		t.Error("an expired credential opened a new relay")
	}
	// And past the grace, the old relay cannot be kept either.
	clock.Advance(time.Hour)
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(203, 0, 113, 6), Port: 9}); err == nil {
		t.Error("a credential expired for longer than the grace still works")
	}

	// The same rules, asked of the handler directly, method by method.
	ra := func(m stun.Method) *pionturn.RequestAttributes {
		return &pionturn.RequestAttributes{Username: user, Realm: DefaultRealm, Method: m}
	}
	for _, m := range []stun.Method{stun.MethodAllocate, stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind} {
		clock.set(time.Now()) // unexpired
		if id, key, ok := s.authenticate(ra(m)); !ok || id != "memberA" || len(key) != 16 {
			t.Errorf("%v, unexpired: %q %x %v", m, id, key, ok)
		}
		clock.set(time.Now().Add(30 * time.Minute)) // expired, within the grace
		_, _, ok := s.authenticate(ra(m))
		if want := m != stun.MethodAllocate; ok != want {
			t.Errorf("%v, expired within the grace: ok = %v, want %v", m, ok, want)
		}
		clock.set(time.Now().Add(3 * time.Hour)) // past the grace
		if _, _, ok := s.authenticate(ra(m)); ok {
			t.Errorf("%v, past the grace: accepted", m)
		}
	}
}

func TestPermissionsToDeniedPeersAreRefused(t *testing.T) {
	// The relay address is a documentation address here, so that loopback
	// is not the server's own address (which is always allowed).
	s := startTURN(t, func(c *Config) { c.PublicIP = netip.MustParseAddr("192.0.2.10") })
	u, p := mintFor("memberA", time.Hour)
	c := turnClient(t, s, u, p)
	allocate(t, c)
	for _, peer := range []string{"127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "100.64.0.1"} {
		if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP(peer), Port: 9}); err == nil {
			t.Errorf("permission to %s granted", peer)
		}
	}
	// Public addresses are fine (no datagram is sent: a permission only
	// opens the relay's filter).
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("203.0.113.5"), Port: 9}); err != nil {
		t.Errorf("permission to a public address: %v", err)
	}

	// With the operator's allowance, a private range is reachable.
	s2 := startTURN(t, func(c *Config) {
		c.PublicIP = netip.MustParseAddr("192.0.2.10")
		c.Peers.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	c2 := turnClient(t, s2, u, p)
	allocate(t, c2)
	if err := c2.CreatePermission(&net.UDPAddr{IP: net.ParseIP("10.0.0.1"), Port: 9}); err != nil {
		t.Errorf("permission to an allowed private address: %v", err)
	}
	if err := c2.CreatePermission(&net.UDPAddr{IP: net.ParseIP("192.168.0.1"), Port: 9}); err == nil {
		t.Error("permission to a private address outside the allowed range granted")
	}
}

// TestRelayNeverReachesTheServersOwnServices checks that the server's own
// address, allowed so that two relays can talk, is reachable only on relay
// ports: not, say, the web server's or another service's port.
func TestRelayNeverReachesTheServersOwnServices(t *testing.T) {
	s := startTURN(t)
	service, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer service.Close()
	if p := service.LocalAddr().(*net.UDPAddr).Port; p >= testMinPort && p <= testMaxPort {
		t.Skipf("the service socket got relay port %d", p)
	}
	u, p := mintFor("memberA", time.Hour)
	relay := allocate(t, turnClient(t, s, u, p))
	// The client creates the permission (127.0.0.1 is the server's own
	// address, so it is granted) and sends; the relay must drop it.
	for range 3 {
		if _, err := relay.WriteTo([]byte("knock"), service.LocalAddr()); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	service.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, from, err := service.ReadFrom(make([]byte, 100)); err == nil {
		t.Fatalf("the service got %d bytes from %v through the relay", n, from)
	}
	// The TURN port itself is not a relay port either.
	if s.mayReach(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.Port()}) {
		t.Error("the relay may send to the TURN port")
	}
	if !s.mayReach(relay.LocalAddr()) {
		t.Error("the relay may not send to a relay socket of its own address")
	}
}

func TestAllocationQuotaPerMember(t *testing.T) {
	s := startTURN(t, func(c *Config) { c.MaxAllocationsPerMember = 2 })
	u, p := mintFor("memberA", time.Hour)
	r1 := allocate(t, turnClient(t, s, u, p))
	allocate(t, turnClient(t, s, u, p))
	// A third one, even with fresh credentials for the same member, is
	// over the quota.
	u2, p2 := mintFor("memberA", 2*time.Hour)
	_, err := turnClient(t, s, u2, p2).Allocate()
	if err == nil {
		t.Fatal("a third allocation succeeded with a quota of 2")
	}
	if !strings.Contains(err.Error(), "486") {
		t.Errorf("refusal %q is not 486 (Allocation Quota Reached)", err)
	}
	if got := s.Allocations("memberA"); got != 2 {
		t.Errorf("Allocations = %d, want 2", got)
	}
	// Another member is not affected.
	ub, pb := mintFor("memberB", time.Hour)
	allocate(t, turnClient(t, s, ub, pb))
	// Releasing one makes room.
	r1.Close()
	waitFor(t, "memberA's first relay to be released", func() bool { return s.Allocations("memberA") == 1 })
	allocate(t, turnClient(t, s, u2, p2))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRevokeClosesRelaysAndRefusesCredentials(t *testing.T) {
	s := startTURN(t)
	ua, pa := mintFor("memberA", time.Hour)
	ub, pb := mintFor("memberB", time.Hour)
	ca := turnClient(t, s, ua, pa)
	ra1 := allocate(t, ca)
	allocate(t, turnClient(t, s, ua, pa))
	rb := allocate(t, turnClient(t, s, ub, pb))
	exchange(t, ra1, rb, "before")
	exchange(t, rb, ra1, "before")

	if err := s.Revoke(t.Context(), "memberA"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if got := s.Allocations("memberA"); got != 0 {
		t.Errorf("memberA holds %d relays after Revoke", got)
	}
	waitFor(t, "the server to drop memberA's allocations", func() bool { return s.AllocationCount() == 1 })
	// Nothing crosses the closed relay any more.
	rb.WriteTo([]byte("after"), ra1.LocalAddr())
	ra1.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := ra1.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("memberA's relay still delivered %d bytes", n)
	}
	// Its credentials, even fresh ones, open nothing.
	un, pn := mintFor("memberA", 2*time.Hour)
	if r, err := turnClient(t, s, un, pn).Allocate(); err == nil {
		r.Close()
		t.Error("a revoked member allocated again")
	}
	// memberB goes on.
	if got := s.Allocations("memberB"); got != 1 {
		t.Errorf("memberB holds %d relays, want 1", got)
	}
}

func TestTCPAndTLSTransports(t *testing.T) {
	cert := selfSigned(t)
	s := startTURN(t, func(c *Config) {
		c.TLSListen = "127.0.0.1:0"
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	if s.TLSPort() == 0 || s.TLSPort() == s.Port() {
		t.Fatalf("TLS port %d", s.TLSPort())
	}
	u, p := mintFor("memberA", time.Hour)

	tcp, err := net.Dial("tcp4", s.testAddr())
	if err != nil {
		t.Fatal(err)
	}
	allocate(t, clientOver(t, s.testAddr(), pionturn.NewSTUNConn(tcp), u, p))

	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.TLSPort()))
	tc, err := tls.Dial("tcp4", tlsAddr, &tls.Config{RootCAs: pool, ServerName: "turn.test"})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	allocate(t, clientOver(t, tlsAddr, pionturn.NewSTUNConn(tc), u, p))
	if got := s.Allocations("memberA"); got != 2 {
		t.Errorf("Allocations = %d, want 2 (TCP and TLS)", got)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "turn.test"},
		DNSNames:     []string{"turn.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestStartRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no secret", Config{Listen: "127.0.0.1:0", PublicIP: loopback}},
		{"inverted port range", Config{Secret: testSecret, Listen: "127.0.0.1:0", PublicIP: loopback, MinRelayPort: 5000, MaxRelayPort: 4000}},
		{"IPv6 relay address", Config{Secret: testSecret, Listen: "127.0.0.1:0", PublicIP: netip.MustParseAddr("2001:db8::1")}},
		{"TLS without certificate", Config{Secret: testSecret, Listen: "127.0.0.1:0", PublicIP: loopback, TLSListen: "127.0.0.1:0"}},
		{"bad listen address", Config{Secret: testSecret, Listen: "127.0.0.1", PublicIP: loopback}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Start(tc.cfg); err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
		})
	}
	// A port already taken is reported, not ignored.
	s := startTURN(t)
	if s2, err := Start(Config{Secret: testSecret, Listen: s.testAddr(), PublicIP: loopback}); err == nil {
		s2.Close()
		t.Fatal("a second server started on a port in use")
	}
}

func tlsConfigOf(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func TestSilentTCPConnectionsAreClosed(t *testing.T) {
	// The limits are read when the server starts: shortened for this one.
	first, idle := firstReadTimeout, idleTimeout
	firstReadTimeout, idleTimeout = 200*time.Millisecond, 400*time.Millisecond
	s := startTURN(t)
	firstReadTimeout, idleTimeout = first, idle

	// A connection that never speaks is closed.
	silent, err := net.Dial("tcp4", s.testAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a silent connection was not closed by the server: %v", err)
	}

	// One that allocates and then keeps talking lives longer than both
	// limits.
	tcp, err := net.Dial("tcp4", s.testAddr())
	if err != nil {
		t.Fatal(err)
	}
	u, p := mintFor("memberA", time.Hour)
	c := clientOver(t, s.testAddr(), pionturn.NewSTUNConn(tcp), u, p)
	allocate(t, c)
	for range 4 {
		time.Sleep(200 * time.Millisecond)
		if _, err := c.SendBindingRequest(); err != nil {
			t.Fatalf("a talking connection was cut: %v", err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
