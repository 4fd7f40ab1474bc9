package turn

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// ownMin–ownMax is the relay range of the tests here (see isolated):
// the services they start sit on its first port, inside the range as on a
// server whose services share the ports it gives relays.
const ownMin, ownMax = 23500, 23519

// TestRelayNeverReachesServicesInsideTheRelayRange starts a UDP and a TCP
// service on the server's own address on a port of the relay range, with
// loopback allowed as a test allows it: neither is reachable through a
// relay, while two relays still reach each other.
func TestRelayNeverReachesServicesInsideTheRelayRange(t *testing.T) {
	var cfg Config
	isolated(&cfg)
	svcAddr := net.JoinHostPort(cfg.PublicIP.String(), strconv.Itoa(ownMin))
	udpSvc, err := net.ListenPacket("udp4", svcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer udpSvc.Close()
	tcpSvc, err := net.Listen("tcp4", svcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcpSvc.Close()
	s := startTURN(t, func(c *Config) {
		c.Listen, c.PublicIP = cfg.Listen, cfg.PublicIP
		c.MinRelayPort, c.MaxRelayPort = ownMin, ownMax
		c.Peers.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})

	ua, pa := mintFor("memberA", time.Hour)
	ub, pb := mintFor("memberB", time.Hour)
	ca := turnClient(t, s, ua, pa)
	ra, rb := allocate(t, ca), allocate(t, turnClient(t, s, ub, pb))

	// UDP: the knock to the service is sent before the datagram to the
	// other relay, over the same client connection, which the server reads
	// in order; once that datagram has arrived, the knock was handled.
	if _, err := ra.WriteTo([]byte("knock"), udpSvc.LocalAddr()); err != nil {
		t.Fatalf("write: %v", err)
	}
	exchange(t, ra, rb, "relay to relay")
	if waiting(t, udpSvc.(*net.UDPConn)) {
		t.Fatal("the UDP service got a datagram through the relay")
	}

	// TCP: a TCP allocation (RFC 6062) may not connect to the service.
	ctrl, err := net.Dial("tcp4", s.testAddr())
	if err != nil {
		t.Fatal(err)
	}
	tcpAlloc, err := clientOver(t, s.testAddr(), pionturn.NewSTUNConn(ctrl), ua, pa).AllocateTCP()
	if err != nil {
		t.Fatalf("TCP allocation: %v", err)
	}
	defer tcpAlloc.Close()
	if _, err := tcpAlloc.Connect(tcpSvc.Addr()); err == nil {
		t.Error("a TCP relay connected to the TCP service on the server's own address")
	}
	if waiting(t, tcpSvc.(*net.TCPListener)) {
		t.Error("a connection from the relay waits at the TCP service")
	}
}

// waiting reports whether a datagram or a connection waits on c now,
// without waiting for one (a read with a deadline already past returns
// before looking): a receive that does not wait, or an accept on the
// listener's descriptor, which is non-blocking.
func waiting(t *testing.T, c syscall.Conn) bool {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var lookErr error
	err = raw.Control(func(fd uintptr) {
		if _, ok := c.(*net.UDPConn); ok {
			_, _, lookErr = syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_DONTWAIT|syscall.MSG_PEEK)
			return
		}
		var nfd int
		if nfd, _, lookErr = syscall.Accept(int(fd)); lookErr == nil {
			syscall.Close(nfd)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if lookErr != nil && !errors.Is(lookErr, syscall.EAGAIN) {
		t.Fatalf("look for waiting input: %v", lookErr)
	}
	return lookErr == nil
}

func TestOwnAddressesAreReachableOnlyOnRelaySockets(t *testing.T) {
	s := startTURN(t, isolated, func(c *Config) {
		c.MinRelayPort, c.MaxRelayPort = ownMin, ownMax
		c.PublicIP = netip.MustParseAddr("192.0.2.10")
		c.Peers.Allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	})
	u, p := mintFor("memberA", time.Hour)
	relay := allocate(t, clientFrom(t, s, "127.0.0.1", u, p))
	port := relay.LocalAddr().(*net.UDPAddr).Port
	other := ownMin
	if other == port {
		other++
	}
	listen, _, _ := net.SplitHostPort(s.cfg.Listen)
	udp := func(ip string, port int) net.Addr { return &net.UDPAddr{IP: net.ParseIP(ip), Port: port} }
	tests := []struct {
		name string
		peer net.Addr
		want bool
	}{
		{"the public address, on the relay's socket", udp("192.0.2.10", port), true},
		{"the listen address, on the relay's socket", udp(listen, port), true},
		{"another loopback address, on the relay's port", udp("127.0.0.1", port), false},
		{"loopback's directed broadcast, on the relay's port", udp("127.255.255.255", port), false},
		{"the limited broadcast, on the relay's port", udp("255.255.255.255", port), false},
		{"the public address, on a free port of the range", udp("192.0.2.10", other), false},
		{"the public address, on the TURN port", udp("192.0.2.10", s.Port()), false},
		{"the listen address, on a free port of the range", udp(listen, other), false},
		{"another loopback address, on a free port of the range", udp("127.0.0.2", other), false},
		{"the unspecified address", udp("0.0.0.0", other), false},
		{"the relay's UDP port, over TCP", &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: port}, false},
		{"an address of another host, allowed by the policy", udp("10.1.2.3", other), true},
	}
	for _, tt := range tests {
		if got := s.mayReach(tt.peer); got != tt.want {
			t.Errorf("%s (%v): mayReach = %v, want %v", tt.name, tt.peer, got, tt.want)
		}
	}

	// Relay sockets bound to every address hold their port on each.
	s.relayIP = netip.IPv4Unspecified()
	if !s.mayReach(udp("127.0.0.1", port)) {
		t.Error("relays bound to every address: loopback on the relay's port is not reachable")
	}
	if s.mayReach(udp("127.0.0.1", other)) {
		t.Error("relays bound to every address: loopback on a free port of the range is reachable")
	}
}

func TestDirectedBroadcast(t *testing.T) {
	tests := []struct {
		ip   string
		mask net.IPMask
		want string // "" when the subnet has none
	}{
		{"192.168.1.7", net.CIDRMask(24, 32), "192.168.1.255"},
		{"10.1.2.3", net.CIDRMask(8, 32), "10.255.255.255"},
		{"172.16.5.9", net.CIDRMask(20, 32), "172.16.15.255"},
		{"192.168.1.7", net.CIDRMask(120, 128), "192.168.1.255"},
		{"192.168.1.6", net.CIDRMask(31, 32), ""},
		{"192.168.1.7", net.CIDRMask(32, 32), ""},
		{"2001:db8::1", net.CIDRMask(64, 128), ""},
	}
	for _, tt := range tests {
		got, ok := directedBroadcast(netip.MustParseAddr(tt.ip), tt.mask)
		if tt.want == "" {
			if ok {
				t.Errorf("%s/%v: broadcast %v, want none", tt.ip, tt.mask, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s/%v: broadcast %v (%v), want %s", tt.ip, tt.mask, got, ok, tt.want)
		}
	}
}
