package turn

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// The relay never reaches the server's own services: a peer on one of the
// server's own addresses (loopback, the unspecified address, every address
// of its interfaces, and the public relay address) is reachable only on a
// port where this server holds a relay socket of the same transport, so
// that two clients relayed by this server still reach each other. This
// holds whatever PeerPolicy allows: an operator (or a test) allowing
// loopback or a private range opens those networks, never the server's own
// ports outside its relays.

// ownRefresh is how often the interface addresses are read again, at the
// next allocation: addresses come and go (DHCP, a new container network).
const ownRefresh = time.Minute

// ownAddrs is the set of the server's own addresses, swapped whole so that
// the check on every relayed datagram reads it without a lock.
type ownAddrs struct {
	set atomic.Pointer[map[netip.Addr]struct{}]

	mu   sync.Mutex // serialises refreshes
	read time.Time
}

// refresh reads the interface addresses again, at now.
func (o *ownAddrs) refresh(public netip.Addr, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.load(public, now)
}

// refreshIfStale refreshes the set when it is older than ownRefresh, unless
// another refresh is under way.
func (o *ownAddrs) refreshIfStale(public netip.Addr, now time.Time) {
	if !o.mu.TryLock() {
		return
	}
	defer o.mu.Unlock()
	if now.Sub(o.read) >= ownRefresh || now.Before(o.read) {
		o.load(public, now)
	}
}

func (o *ownAddrs) load(public netip.Addr, now time.Time) {
	set := map[netip.Addr]struct{}{public.Unmap(): {}}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					set[ip.Unmap()] = struct{}{}
				}
			}
		}
	}
	o.set.Store(&set)
	o.read = now
}

// has reports whether ip is one of the server's own addresses.
func (o *ownAddrs) has(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	_, ok := (*o.set.Load())[ip]
	return ok
}

// mayReach is the last check before a relay sends, to a UDP peer for each
// datagram or to a TCP peer before connecting: a peer on one of the
// server's own addresses only on a port of one of its relay sockets of the
// same transport, any other peer when the policy allows its address.
func (s *Server) mayReach(addr net.Addr) bool {
	var (
		ap  netip.AddrPort
		tcp bool
	)
	switch a := addr.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap, tcp = a.AddrPort(), true
	default:
		return false
	}
	ip := ap.Addr().Unmap()
	if s.own.has(ip) {
		return s.isRelayPort(relayPort{tcp: tcp, port: ap.Port()})
	}
	return s.policy.Allowed(ip)
}

// isRelayPort reports whether this server holds a relay socket on p. It
// takes no lock: two clients relayed by this server send every datagram
// through it.
func (s *Server) isRelayPort(p relayPort) bool {
	n := s.useOf(p)
	return n != nil && n.Load() > 0
}
