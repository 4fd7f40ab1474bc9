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
// of its interfaces, and the public relay address) is reachable only at
// the address and port of a relay socket of the same transport, so that
// two clients relayed by this server still reach each other: at the public
// relay address or the address the relay sockets are bound to, on a port
// where this server holds a relay socket; when relay sockets are bound to
// every address, on such a port of any own address. The directed broadcast
// address of each interface's subnet is never reachable (Go's UDP sockets
// may broadcast), nor is the limited broadcast address. This
// holds whatever PeerPolicy allows: an operator (or a test) allowing
// loopback or a private range opens those networks, never the server's own
// ports outside its relays.

// ownRefresh is how often the interface addresses are read again, at the
// next allocation: addresses come and go (DHCP, a new container network).
const ownRefresh = time.Minute

// ownAddrs is the set of the server's own addresses, each mapped to
// whether it is a directed broadcast address of one of its subnets, swapped
// whole so that the check on every relayed datagram reads it without a
// lock.
type ownAddrs struct {
	set atomic.Pointer[map[netip.Addr]bool]

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
	set := map[netip.Addr]bool{public.Unmap(): false}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			ip, n, ok := interfaceIP(a)
			if !ok {
				continue
			}
			set[ip] = set[ip] // an own address; still denied if another subnet's broadcast
			if b, ok := directedBroadcast(ip, n.Mask); ok {
				set[b] = true
			}
		}
	}
	o.set.Store(&set)
	o.read = now
}

// directedBroadcast returns the broadcast address of the IPv4 subnet of ip
// with mask, if the subnet has one (not /31 nor /32).
func directedBroadcast(ip netip.Addr, mask net.IPMask) (netip.Addr, bool) {
	ones, bits := mask.Size()
	if bits == 8*net.IPv6len {
		ones -= 8 * (net.IPv6len - net.IPv4len)
	}
	if !ip.Is4() || bits == 0 || ones < 0 || ones > 30 {
		return netip.Addr{}, false
	}
	b := ip.As4()
	host := ^uint32(0) >> ones
	for i := range 4 {
		b[i] |= byte(host >> (24 - 8*i))
	}
	return netip.AddrFrom4(b), true
}

// has reports whether ip is one of the server's own addresses, and whether
// it is a broadcast address.
func (o *ownAddrs) has(ip netip.Addr) (own, broadcast bool) {
	ip = ip.Unmap().WithZone("")
	if ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true, true
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true, false
	}
	broadcast, own = (*o.set.Load())[ip]
	return own, broadcast
}

// mayReach is the last check before a relay sends, to a UDP peer for each
// datagram or to a TCP peer before connecting: a peer on one of the
// server's own addresses only at a relay socket of the same transport (see
// the top of this file), never a broadcast address, any other peer when
// the policy allows its address.
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
	if own, broadcast := s.own.has(ip); own {
		if broadcast {
			return false
		}
		if !s.relayIP.IsUnspecified() && ip != s.relayIP && ip != s.cfg.PublicIP {
			return false
		}
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
