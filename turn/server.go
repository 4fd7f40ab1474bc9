// Package turn is lepeerchat's built-in STUN/TURN server, a thin layer over
// pion/turn: UDP and TCP listeners on one port (and TURN over TLS on another
// when given a certificate), relay sockets in a port range advertised at a
// configurable public address, the coturn-compatible short-lived
// credentials of credentials.go, caps on the allocations of each member and
// of each client address with a reserve of relay ports (quota.go), a
// deny-list of peer addresses (PeerPolicy) and a ban on the server's own
// services (own.go), and revocation of a member's relays when it leaves its
// room or is removed from it, kept in the store (revoke.go).
//
// It also builds the list of ICE servers a browser is given (Provider),
// for the built-in server or for external STUN/TURN servers such as a
// coturn sharing the secret.
package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
	"golang.org/x/sync/singleflight"
)

// Defaults applied by Start to the zero fields of Config.
const (
	DefaultPort                    = 3478
	DefaultMinRelayPort            = 49152
	DefaultMaxRelayPort            = 65535
	DefaultRealm                   = "lepeerchat"
	DefaultCredentialTTL           = 4 * time.Hour
	DefaultRefreshGrace            = 24 * time.Hour
	DefaultMaxAllocationsPerMember = 128
	// DefaultMaxAllocationsPerAddress is the cap on the relays of one
	// client address, unless half the relay port range is smaller.
	DefaultMaxAllocationsPerAddress = 256
	DefaultRelayReservePercent      = 10
)

// Config sets up a Server. Zero values take the defaults documented on each
// field.
type Config struct {
	// Secret is the shared secret of the credentials. Required.
	Secret string
	// Realm is the TURN realm. Default "lepeerchat".
	Realm string

	// Listen is the address of the UDP and TCP listeners, both on the same
	// port. Default ":3478": every address, IPv4 and IPv6 (clients reaching
	// it over IPv6 still get IPv4 relays). Port 0 picks a port free for
	// both; see Port. Relay sockets bind to its host when that is one IPv4
	// address, else to every IPv4 address.
	Listen string
	// TLSListen and TLSConfig, when both set, add a TURN-over-TLS listener.
	TLSListen string
	TLSConfig *tls.Config

	// PublicIP is the relay address given to clients in allocations: the
	// server's address as the Internet sees it. Default: DefaultRelayIP.
	PublicIP netip.Addr
	// MinRelayPort and MaxRelayPort bound the relay sockets' ports.
	// Default 49152–65535.
	MinRelayPort, MaxRelayPort uint16

	// Peers decides where relays may send. Its zero value denies every
	// loopback, private, link-local, multicast and reserved address; the
	// server adds PublicIP to its allowed ranges, so that two clients
	// relayed by this server reach each other.
	Peers PeerPolicy
	// MaxAllocationsPerMember caps the allocations one member holds at
	// once. Default 128: a browser in a full room (64 members) allocates
	// one relay per peer connection and per transport (UDP, TCP).
	MaxAllocationsPerMember int
	// MaxAllocationsPerAddress caps the allocations of one client address
	// (clientaddr: an IPv4 address, an IPv6 /64), across all the members
	// it speaks for: rooms are created without invitation, so one person
	// can be many members. Default 256 (two browsers in full rooms behind
	// one NAT), or half the relay port range when that is smaller.
	MaxAllocationsPerAddress int
	// RelayReservePercent is the share of the relay port range kept in
	// reserve: once only that many ports are free, an address already
	// holding its fair share of the others is refused, so that a flood
	// from one address cannot take the last ports. Default 10; negative:
	// no reserve.
	RelayReservePercent int
	// Revocations, when set, keeps the revoked members (the store): a
	// revocation then survives a restart and reaches every node sharing
	// it. Without it, revocations live in this process only.
	Revocations Revocations

	// CredentialTTL is how long minted credentials last; the server uses
	// it to know how long to remember revoked members. Default 4 h.
	CredentialTTL time.Duration
	// RefreshGrace is how long after its credential expired a relay made
	// in time may still be refreshed and given permissions. Browsers keep
	// using the credentials an allocation was made with, so without it a
	// relayed call would break when the credential expires. New
	// allocations always need an unexpired credential. Default 24 h.
	RefreshGrace time.Duration

	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Server is a running STUN/TURN server.
type Server struct {
	cfg    Config
	policy PeerPolicy
	pion   *pionturn.Server
	port   int
	tls    net.Listener

	// size is the number of ports of the relay range, reserved how many of
	// them are kept in reserve, maxPerAddress the cap of a client address.
	size, reserved, maxPerAddress int
	own                           ownAddrs
	// relayIP is the address relay sockets are bound to, or the
	// unspecified address when they are bound to every IPv4 address.
	relayIP netip.Addr
	// inUse counts the open relay sockets on each port of the range, UDP
	// ([0]) and TCP ([1]), read without the lock for every datagram a
	// relay sends to the server's own address (see mayReach).
	inUse [2][]atomic.Int32

	mu sync.Mutex
	// relays holds the open relay sockets of each member.
	relays map[string]map[*relay]struct{}
	// clients counts the open relays of each client address; open counts
	// them all.
	clients map[string]int
	open    int
	// pending holds the note of each member's allocations under way, from
	// the quota check to the opening of their socket (see admitPending).
	// Notes and store answers gone stale are swept at swept, so they hold
	// at most the members that passed the quota check lately, which needs
	// valid credentials.
	pending map[string]pending
	// checked holds when the store last said each member was not revoked
	// (see notRevokedFor and recheckEvery).
	checked map[string]time.Time
	swept   time.Time
	// lookups makes concurrent look-ups of one member in the store one.
	lookups singleflight.Group
	// revoked holds members gone for good, and until when their
	// credentials could still be used.
	revoked map[string]time.Time
	closed  bool
}

// Start listens and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Secret == "" {
		return nil, errors.New("turn: a shared secret is required")
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.Listen == "" {
		cfg.Listen = ":" + strconv.Itoa(DefaultPort)
	}
	if cfg.MinRelayPort == 0 && cfg.MaxRelayPort == 0 {
		cfg.MinRelayPort, cfg.MaxRelayPort = DefaultMinRelayPort, DefaultMaxRelayPort
	}
	if cfg.MinRelayPort == 0 || cfg.MaxRelayPort < cfg.MinRelayPort {
		return nil, fmt.Errorf("turn: bad relay port range %d-%d", cfg.MinRelayPort, cfg.MaxRelayPort)
	}
	if cfg.MaxAllocationsPerMember <= 0 {
		cfg.MaxAllocationsPerMember = DefaultMaxAllocationsPerMember
	}
	size := int(cfg.MaxRelayPort) - int(cfg.MinRelayPort) + 1
	if cfg.MaxAllocationsPerAddress <= 0 {
		cfg.MaxAllocationsPerAddress = min(DefaultMaxAllocationsPerAddress, max(1, size/2))
	}
	if cfg.RelayReservePercent == 0 {
		cfg.RelayReservePercent = DefaultRelayReservePercent
	}
	if cfg.CredentialTTL <= 0 {
		cfg.CredentialTTL = DefaultCredentialTTL
	}
	if cfg.RefreshGrace <= 0 {
		cfg.RefreshGrace = DefaultRefreshGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if (cfg.TLSListen == "") != (cfg.TLSConfig == nil) {
		return nil, errors.New("turn: TURN over TLS needs both an address and a TLS configuration")
	}
	if !cfg.PublicIP.IsValid() {
		cfg.PublicIP = DefaultRelayIP()
	}
	cfg.PublicIP = cfg.PublicIP.Unmap()
	if !cfg.PublicIP.Is4() {
		return nil, fmt.Errorf("turn: the relay address %s is not IPv4; only IPv4 relays are supported", cfg.PublicIP)
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("turn: listen address %q: %w", cfg.Listen, err)
	}
	// Relay sockets listen where the server does, if that is one IPv4
	// address, else on every IPv4 address.
	bindIP := netip.IPv4Unspecified()
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() && !ip.IsUnspecified() {
		bindIP = ip
	}

	s := &Server{
		cfg:           cfg,
		size:          size,
		reserved:      reserveOf(size, cfg.RelayReservePercent),
		maxPerAddress: cfg.MaxAllocationsPerAddress,
		relayIP:       bindIP,
		relays:        make(map[string]map[*relay]struct{}),
		clients:       make(map[string]int),
		pending:       make(map[string]pending),
		checked:       make(map[string]time.Time),
		revoked:       make(map[string]time.Time),
	}
	s.inUse = [2][]atomic.Int32{make([]atomic.Int32, size), make([]atomic.Int32, size)}
	s.own.refresh(cfg.PublicIP, cfg.Now())
	s.policy = PeerPolicy{Allow: append([]netip.Prefix{netip.PrefixFrom(cfg.PublicIP, 32)}, cfg.Peers.Allow...)}

	udp, tcp, err := listenPair(cfg.Listen)
	if err != nil {
		return nil, err
	}
	s.port = udp.LocalAddr().(*net.UDPAddr).Port
	gen := &relayGenerator{
		s: s,
		inner: &pionturn.RelayAddressGeneratorPortRange{
			RelayAddress: net.IP(cfg.PublicIP.AsSlice()),
			Address:      bindIP.String(),
			MinPort:      cfg.MinRelayPort,
			MaxPort:      cfg.MaxRelayPort,
			MaxRetries:   30,
		},
	}
	perm := func(client net.Addr, peer net.IP) bool {
		ok := s.policy.allowedIP(peer)
		if !ok {
			cfg.Logger.Debug("turn: permission to a denied peer refused", "client", client.String(), "peer", peer.String())
		}
		return ok
	}
	listeners := []pionturn.ListenerConfig{{Listener: newIdleListener(tcp), RelayAddressGenerator: gen, PermissionHandler: perm}}
	if cfg.TLSListen != "" {
		ln, err := net.Listen("tcp", cfg.TLSListen)
		if err != nil {
			udp.Close()
			tcp.Close()
			return nil, fmt.Errorf("turn: listen on %s (TLS): %w", cfg.TLSListen, err)
		}
		s.tls = ln
		listeners = append(listeners, pionturn.ListenerConfig{
			Listener: tls.NewListener(newIdleListener(ln), cfg.TLSConfig), RelayAddressGenerator: gen, PermissionHandler: perm,
		})
	}
	s.pion, err = pionturn.NewServer(pionturn.ServerConfig{
		Realm: cfg.Realm,
		// Clients that reach the server over IPv6 still get an IPv4
		// relay unless they ask otherwise (RFC 6156).
		StrictAddressFamily: true,
		AuthHandler:         s.authenticate,
		QuotaHandler:        s.quota,
		EventHandler:        pionturn.EventHandler{OnAuth: s.onAuth},
		PacketConnConfigs:   []pionturn.PacketConnConfig{{PacketConn: udp, RelayAddressGenerator: gen, PermissionHandler: perm}},
		ListenerConfigs:     listeners,
		LoggerFactory:       slogFactory{cfg.Logger},
	})
	if err != nil {
		udp.Close()
		tcp.Close()
		if s.tls != nil {
			s.tls.Close()
		}
		return nil, fmt.Errorf("turn: %w", err)
	}
	return s, nil
}

// listenPair opens a UDP and a TCP listener on the same address and port;
// with port 0 it finds a port free for both. Without a host, or with an
// unspecified one, they listen on every address, IPv4 and IPv6.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("turn: listen address %q: %w", addr, err)
	}
	udpNet, tcpNet := "udp", "tcp"
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		udpNet, tcpNet = "udp4", "tcp4"
	}
	for try := 0; ; try++ {
		udp, err := net.ListenPacket(udpNet, addr)
		if err != nil {
			return nil, nil, fmt.Errorf("turn: listen on %s (UDP): %w", addr, err)
		}
		p := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen(tcpNet, net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if port != "0" || try == 20 {
			return nil, nil, fmt.Errorf("turn: listen on %s (TCP): %w", addr, err)
		}
	}
}

// Port is the port of the UDP and TCP listeners.
func (s *Server) Port() int { return s.port }

// TLSPort is the port of the TURN-over-TLS listener, or 0.
func (s *Server) TLSPort() int {
	if s.tls == nil {
		return 0
	}
	return s.tls.Addr().(*net.TCPAddr).Port
}

// PublicIP is the relay address given to clients.
func (s *Server) PublicIP() netip.Addr { return s.cfg.PublicIP }

// Close stops the server and closes every relay.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var all []*relay
	for _, set := range s.relays {
		for r := range set {
			all = append(all, r)
		}
	}
	s.mu.Unlock()
	err := s.pion.Close()
	for _, r := range all {
		r.Close()
	}
	return err
}

// Allocations returns how many relays member holds now.
func (s *Server) Allocations(member string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.relays[member])
}

// AllocationCount returns how many relays are open.
func (s *Server) AllocationCount() int { return s.pion.AllocationCount() }

// authenticate is the pion AuthHandler: it gives pion the key of the
// password the scheme pairs with the username; pion then checks the
// request's MESSAGE-INTEGRITY with it, so a password made with another
// secret, or for another username, fails. The user id pion keeps on the
// allocation is the member id, so that credentials minted later for the
// same member refresh the same allocation.
func (s *Server) authenticate(ra *pionturn.RequestAttributes) (string, []byte, bool) {
	member, expires, err := ParseUsername(ra.Username)
	if err != nil {
		s.cfg.Logger.Debug("turn: malformed username", "client", addrString(ra.SrcAddr))
		return "", nil, false
	}
	if s.isRevoked(member) {
		s.cfg.Logger.Debug("turn: credentials of a departed member refused", "member", member, "client", addrString(ra.SrcAddr))
		return "", nil, false
	}
	now := s.cfg.Now()
	if Expired(expires, now) {
		// An expired credential may only keep a relay made in time alive:
		// the methods other than Allocate act on an existing allocation of
		// the same member on the same 5-tuple.
		if ra.Method == stun.MethodAllocate || Expired(expires.Add(s.cfg.RefreshGrace), now) {
			s.cfg.Logger.Debug("turn: expired credentials refused", "member", member, "method", ra.Method.String(), "client", addrString(ra.SrcAddr))
			return "", nil, false
		}
	}
	return member, pionturn.GenerateAuthKey(ra.Username, s.cfg.Realm, Password(s.cfg.Secret, ra.Username)), true
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

var (
	errClosed   = errors.New("turn: server closed")
	errFamily   = errors.New("turn: only IPv4 relays are supported")
	errPeerDeny = errors.New("turn: peer address denied")
	errNoPort   = errors.New("turn: no free port in the relay range")
)

// relayGenerator opens relay sockets through pion's port-range generator,
// counting them per member and wrapping them so that they can be closed on
// revocation and refuse to send to denied peers.
type relayGenerator struct {
	s     *Server
	inner *pionturn.RelayAddressGeneratorPortRange
}

func (g *relayGenerator) Validate() error { return g.inner.Validate() }

func (g *relayGenerator) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if conf.Network != "udp4" {
		g.s.dropPending(conf.UserID)
		return nil, nil, errFamily
	}
	r, err := g.s.reserve(conf.UserID, false)
	if err != nil {
		return nil, nil, err
	}
	var (
		pc   net.PacketConn
		addr net.Addr
	)
	if conf.RequestedPort != 0 {
		pc, addr, err = g.inner.AllocatePacketConn(conf)
	} else {
		pc, addr, err = g.listenUDP(conf.Network)
	}
	if err != nil {
		g.s.release(r)
		return nil, nil, err
	}
	if !g.s.opened(r, pc, addr) {
		pc.Close()
		return nil, nil, errRevoked
	}
	return &relayPacketConn{PacketConn: pc, r: r}, addr, nil
}

// listenUDP opens a relay socket on a free port of the range: from a
// random port, every port in turn, so that a free port is found however
// full the range is (pion's generator gives up after a few random picks,
// which fails often once the range is nine tenths full).
func (g *relayGenerator) listenUDP(network string) (net.PacketConn, net.Addr, error) {
	lo, size := int(g.inner.MinPort), int(g.inner.MaxPort)-int(g.inner.MinPort)+1
	start := rand.IntN(size)
	for i := range size {
		port := lo + (start+i)%size
		pc, err := net.ListenPacket(network, net.JoinHostPort(g.inner.Address, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := &net.UDPAddr{IP: g.inner.RelayAddress, Port: port}
		return pc, addr, nil
	}
	return nil, nil, errNoPort
}

func (g *relayGenerator) AllocateListener(conf pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	if conf.Network != "tcp4" {
		g.s.dropPending(conf.UserID)
		return nil, nil, errFamily
	}
	r, err := g.s.reserve(conf.UserID, true)
	if err != nil {
		return nil, nil, err
	}
	ln, addr, err := g.inner.AllocateListener(conf)
	if err != nil {
		g.s.release(r)
		return nil, nil, err
	}
	if !g.s.opened(r, ln, addr) {
		ln.Close()
		return nil, nil, errRevoked
	}
	return &relayListener{Listener: ln, r: r}, addr, nil
}

func (g *relayGenerator) AllocateConn(conf pionturn.AllocateConnConfig) (net.Conn, error) {
	if !g.s.mayReach(conf.RemoteAddr) {
		return nil, errPeerDeny
	}
	return g.inner.AllocateConn(conf)
}

// Idle limits of TCP and TLS connections: a client must speak within
// firstReadTimeout of connecting, then at least every idleTimeout (a
// browser refreshes its allocation and permissions every few minutes).
// Without them, silent connections would hold a goroutine and a file
// descriptor each forever.
var (
	firstReadTimeout = 30 * time.Second
	idleTimeout      = 10 * time.Minute
)

type idleListener struct {
	net.Listener
	first, idle time.Duration
}

func newIdleListener(l net.Listener) idleListener {
	return idleListener{Listener: l, first: firstReadTimeout, idle: idleTimeout}
}

func (l idleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(l.first))
	return &idleConn{Conn: c, idle: l.idle}, nil
}

// idleConn pushes its read deadline back after each read.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return n, err
}

// relay is one relay socket of a member, opened for a client address.
type relay struct {
	s      *Server
	member string
	client string
	// port and closer are the socket's, once open; the server's lock
	// guards them.
	port   relayPort
	closer io.Closer
	once   sync.Once
	err    error
}

// relayPort is a port of a relay socket, UDP or TCP.
type relayPort struct {
	tcp  bool
	port uint16
}

func (r *relay) Close() error {
	r.once.Do(func() {
		if c := r.s.release(r); c != nil {
			r.err = c.Close()
		}
	})
	return r.err
}

type relayPacketConn struct {
	net.PacketConn
	r *relay
}

func (c *relayPacketConn) Close() error { return c.r.Close() }

func (c *relayPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.r.s.mayReach(addr) {
		return 0, errPeerDeny
	}
	return c.PacketConn.WriteTo(p, addr)
}

type relayListener struct {
	net.Listener
	r *relay
}

func (l *relayListener) Close() error { return l.r.Close() }

// interfaceIP returns an interface address as an unmapped netip.Addr, with
// its network, or false when it is not an IP network.
func interfaceIP(a net.Addr) (netip.Addr, *net.IPNet, bool) {
	n, ok := a.(*net.IPNet)
	if !ok {
		return netip.Addr{}, nil, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Addr{}, nil, false
	}
	return ip.Unmap(), n, true
}

// DefaultRelayIP guesses the server's public address: the first global
// unicast IPv4 address of an interface that is up, preferring a public one
// to a private one, else 127.0.0.1. Behind NAT or in a container, set the
// public address explicitly instead.
func DefaultRelayIP() netip.Addr {
	var private netip.Addr
	ifaces, _ := net.Interfaces()
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			ip, _, ok := interfaceIP(a)
			if !ok {
				continue
			}
			if !ip.Is4() || !ip.IsGlobalUnicast() {
				continue
			}
			if (PeerPolicy{}).Allowed(ip) {
				return ip
			}
			if !private.IsValid() {
				private = ip
			}
		}
	}
	if private.IsValid() {
		return private
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// slogFactory hands pion's loggers to slog: pion's errors and warnings at
// info level (a scanner's failed TLS handshake is not the operator's
// problem), everything else at debug level, with the scope as an attribute.
type slogFactory struct{ l *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{f.l.With("pion", scope)}
}

type slogLogger struct{ l *slog.Logger }

func (l slogLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.l.Enabled(ctx, level) {
		return
	}
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	l.l.Log(ctx, level, "turn: "+msg)
}

func (l slogLogger) Trace(string)              {}
func (l slogLogger) Tracef(string, ...any)     {}
func (l slogLogger) Debug(msg string)          { l.logf(slog.LevelDebug, "%s", msg) }
func (l slogLogger) Debugf(f string, a ...any) { l.logf(slog.LevelDebug, f, a...) }
func (l slogLogger) Info(msg string)           { l.logf(slog.LevelDebug, "%s", msg) }
func (l slogLogger) Infof(f string, a ...any)  { l.logf(slog.LevelDebug, f, a...) }
func (l slogLogger) Warn(msg string)           { l.logf(slog.LevelInfo, "%s", msg) }
func (l slogLogger) Warnf(f string, a ...any)  { l.logf(slog.LevelInfo, f, a...) }
func (l slogLogger) Error(msg string)          { l.logf(slog.LevelInfo, "%s", msg) }
func (l slogLogger) Errorf(f string, a ...any) { l.logf(slog.LevelInfo, f, a...) }
