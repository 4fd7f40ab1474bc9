package turn

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// The tests here count ports in narrow relay ranges, so no other socket may
// take one: each runs its server on a loopback address of its own (see
// isolated), where its relays bind, with a range below Linux's ephemeral
// ports (32768–60999) and the default relay range (49152–65535).

// isolated puts the server on a random loopback address other than
// 127.0.0.1–127.0.0.255, relaying from there: no other test, nor another
// copy of this one, uses its ports.
func isolated(c *Config) {
	ip := netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
	c.Listen = net.JoinHostPort(ip.String(), "0")
	c.PublicIP = ip
}

// clientFrom is a pion TURN client over its own UDP socket on the loopback
// address src: each 127.x.y.z address is a client address of its own.
func clientFrom(t *testing.T, s *Server, src, user, pass string) *pionturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", net.JoinHostPort(src, "0"))
	if err != nil {
		t.Fatal(err)
	}
	return clientOver(t, s.testAddr(), conn, user, pass)
}

// allocateMany allocates from src for member, each time over a new client,
// until the server refuses or want relays are open; it returns how many
// were opened and the first refusal.
func allocateMany(t *testing.T, s *Server, src, member string, want int) (int, error) {
	t.Helper()
	u, p := mintFor(member, time.Hour)
	for n := range want {
		relay, err := clientFrom(t, s, src, u, p).Allocate()
		if err != nil {
			return n, err
		}
		t.Cleanup(func() { relay.Close() })
	}
	return want, nil
}

func TestDefaultCapsFollowTheRelayRange(t *testing.T) {
	tests := []struct {
		name             string
		min, max         uint16
		perAddr, reserve int
	}{
		{"default range", DefaultMinRelayPort, DefaultMaxRelayPort, DefaultMaxAllocationsPerAddress, 1638},
		{"150 ports: half the range per address", 23000, 23149, 75, 15},
		{"one port", 23000, 23000, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startTURN(t, isolated, func(c *Config) { c.MinRelayPort, c.MaxRelayPort = tt.min, tt.max })
			if s.maxPerAddress != tt.perAddr || s.reserved != tt.reserve {
				t.Errorf("per address %d, reserve %d; want %d, %d", s.maxPerAddress, s.reserved, tt.perAddr, tt.reserve)
			}
		})
	}
	s := startTURN(t, func(c *Config) { c.RelayReservePercent = -1 })
	if s.reserved != 0 {
		t.Errorf("reserve %d with a negative percentage, want none", s.reserved)
	}
}

// TestOneAddressCannotTakeEveryRelayThroughManyMembers is the attack of
// issue 10: one client creates rooms, so holds many members, and asks for
// every relay each member may have; with a 150-port range a legitimate
// member at another address used to get none.
func TestOneAddressCannotTakeEveryRelayThroughManyMembers(t *testing.T) {
	s := startTURN(t, isolated, func(c *Config) { c.MinRelayPort, c.MaxRelayPort = 23000, 23149 })
	total := 0
	for i := range 3 {
		n, err := allocateMany(t, s, "127.0.0.1", "flooder"+strconv.Itoa(i), DefaultMaxAllocationsPerMember)
		total += n
		if err == nil {
			t.Fatalf("member %d of one address got all %d relays it asked for", i, n)
		}
		if !strings.Contains(err.Error(), "486") {
			t.Errorf("refusal %q is not 486 (Allocation Quota Reached)", err)
		}
	}
	if total != 75 || s.AddressAllocations("127.0.0.1:9") != 75 {
		t.Errorf("one address holds %d relays (counted %d), want the cap of 75", total, s.AddressAllocations("127.0.0.1"))
	}
	if n, err := allocateMany(t, s, "127.0.0.2", "legit", 10); n != 10 {
		t.Errorf("a member at another address got %d/10 relays: %v", n, err)
	}
	if got := s.AddressAllocations("127.0.0.2"); got != 10 {
		t.Errorf("the other address holds %d relays, want 10", got)
	}
}

func TestPerAddressCapCountsEveryMemberOfTheAddress(t *testing.T) {
	s := startTURN(t, isolated, func(c *Config) {
		c.MinRelayPort, c.MaxRelayPort = 23200, 23219
		c.MaxAllocationsPerMember = 2
		c.MaxAllocationsPerAddress = 3
	})
	if n, err := allocateMany(t, s, "127.0.0.1", "memberA", 2); n != 2 {
		t.Fatalf("memberA got %d/2 relays: %v", n, err)
	}
	// memberB is under its own cap, but its address is at 3.
	n, err := allocateMany(t, s, "127.0.0.1", "memberB", 2)
	if n != 1 || err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("memberB at the same address got %d relays (%v), want 1 then 486", n, err)
	}
	// The same member from another address counts there.
	if n, err := allocateMany(t, s, "127.0.0.3", "memberB", 1); n != 1 {
		t.Errorf("memberB from another address got no relay: %v", err)
	}
	if a, b := s.AddressAllocations("127.0.0.1"), s.AddressAllocations("127.0.0.3"); a != 3 || b != 1 {
		t.Errorf("addresses hold %d and %d relays, want 3 and 1", a, b)
	}
}

func TestReserveKeepsTheLastPortsForOtherAddresses(t *testing.T) {
	// 20 ports, 10 % in reserve: 2. No cap per address or member gets in
	// the way, so only the reserve stops the flood.
	s := startTURN(t, isolated, func(c *Config) {
		c.MinRelayPort, c.MaxRelayPort = 23300, 23319
		c.MaxAllocationsPerMember = 100
		c.MaxAllocationsPerAddress = 100
	})
	n, err := allocateMany(t, s, "127.0.0.1", "flooder", 20)
	if n != 18 || err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("one address got %d relays (%v), want 18 then 486", n, err)
	}
	// Another address still gets the reserved ports, up to the last.
	if n, err := allocateMany(t, s, "127.0.0.2", "legit", 2); n != 2 {
		t.Fatalf("another address got %d/2 of the reserved relays: %v", n, err)
	}
	if n, _ := allocateMany(t, s, "127.0.0.3", "late", 1); n != 0 {
		t.Errorf("a relay was opened with every port of the range taken")
	}
	if got := s.AddressAllocations("127.0.0.1"); got != 18 {
		t.Errorf("the flooding address holds %d relays, want 18", got)
	}
}

func TestReserveLetsAnAddressUnderItsShareIn(t *testing.T) {
	// 20 ports, 5 in reserve: 15 to share. Two addresses at 12 and 3 fill
	// the unreserved ports; in the reserve, the one under its share (7 of
	// 15 for two) may go on, the other not.
	s := startTURN(t, isolated, func(c *Config) {
		c.MinRelayPort, c.MaxRelayPort = 23400, 23419
		c.RelayReservePercent = 25
		c.MaxAllocationsPerMember = 100
		c.MaxAllocationsPerAddress = 100
	})
	if n, err := allocateMany(t, s, "127.0.0.1", "big", 12); n != 12 {
		t.Fatalf("got %d/12 relays: %v", n, err)
	}
	if n, err := allocateMany(t, s, "127.0.0.2", "small", 3); n != 3 {
		t.Fatalf("got %d/3 relays: %v", n, err)
	}
	if n, err := allocateMany(t, s, "127.0.0.1", "big2", 1); n != 0 || err == nil {
		t.Errorf("an address over its share allocated in the reserve")
	}
	if n, err := allocateMany(t, s, "127.0.0.2", "small2", 4); n != 4 {
		t.Errorf("an address under its share got %d/4 relays in the reserve: %v", n, err)
	}
	if n, err := allocateMany(t, s, "127.0.0.2", "small3", 1); n != 0 || err == nil {
		t.Errorf("an address that reached its share allocated again in the reserve")
	}
}

func TestAllocationFailingBeforeItsSocketLeavesNoNote(t *testing.T) {
	st := &countingRevocations{}
	clock := &fakeClock{now: time.Now()}
	s := startTURN(t, func(c *Config) {
		c.Revocations = st
		c.Now = clock.Now
	})
	// An IPv6 relay passes quota, then fails in the generator (errFamily).
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	u, p := mintFor("memberA", time.Hour)
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: s.testAddr(), TURNServerAddr: s.testAddr(), Conn: conn,
		Username: u, Password: p, LoggerFactory: quietLogs,
		RequestedAddressFamily: pionturn.RequestedAddressFamilyIPv6,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Allocate(); err == nil {
		r.Close()
		t.Fatal("an IPv6 relay was allocated")
	}
	s.mu.Lock()
	_, noted := s.pending["memberA"]
	s.mu.Unlock()
	if noted {
		t.Error("the failed allocation left its note for reserve")
	}
	// Its store answer is forgotten once too old to spare a look-up, at
	// the next allocation of anyone.
	clock.Advance(notRevokedFor)
	ub, pb := mintFor("memberB", time.Hour)
	allocate(t, turnClient(t, s, ub, pb))
	s.mu.Lock()
	_, kept := s.checked["memberA"]
	s.mu.Unlock()
	if kept {
		t.Error("the store answer about a member holding no relay outlived notRevokedFor")
	}
}

func TestAllocationsUnderWayFromTwoAddressesChargeTheirOwn(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	s := startTURN(t, func(c *Config) { c.Now = clock.Now })
	x := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	y := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 1000}
	if !s.quota("memberA", "", x) {
		t.Fatal("quota refused the first allocation")
	}
	// While x's allocation is under way, y's would take its note.
	if s.quota("memberA", "", y) {
		t.Error("quota let in an allocation from another address while one is under way")
	}
	r, err := s.reserve("memberA", false)
	if err != nil {
		t.Fatalf("reserve: %v", err)
	}
	defer s.release(r)
	if got := s.AddressAllocations("192.0.2.1:1"); got != 1 {
		t.Errorf("the allocating address holds %d relays, want 1", got)
	}
	if !s.quota("memberA", "", y) {
		t.Error("quota refused another address once the allocation under way was done")
	}
	// A note that never reached reserve is not taken past pendingFor.
	clock.Advance(pendingFor)
	if _, err := s.reserve("memberA", false); err == nil {
		t.Error("reserve took a stale note")
	}
}
