// Package clientaddr names the client behind a network address the way every
// per-client limit of the server counts it: an IPv4 address on its own, an
// IPv6 address by its /64, the network one subscriber is given, so that a
// client cannot multiply its quota by cycling through the addresses of its
// own prefix.
package clientaddr

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Of returns the client key of an address given as "host", "host:port" or
// "[host]:port": the IPv4 address, or the IPv6 /64 prefix written as
// "2001:db8:1:2::/64". An IPv4-mapped IPv6 address counts as its IPv4
// address. A string that is not an address is returned unchanged, so that it
// still counts as one client of its own.
func Of(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return addr
	}
	return Key(a)
}

// Key returns the client key of an IP address (see Of).
func Key(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// Wide returns the wider network of an address or client key, given as Of
// takes it or as Of returns it: the IPv4 /24 ("192.0.2.0/24") or the IPv6
// /48 ("2001:db8:1::/48"), what one site or one small provider holds. A
// limit by client key alone is multiplied by the 65,536 /64s of a /48; an
// aggregate limit counts by this. A string that is neither is returned
// unchanged.
func Wide(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		p, perr := netip.ParsePrefix(host)
		if perr != nil {
			return addr
		}
		a = p.Addr()
	}
	a = a.Unmap().WithZone("")
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return addr
	}
	return p.String()
}

// FromRequest returns the client key of an HTTP request: of its peer
// address, or, when the server is told to trust the proxy in front of it, of
// the last address in X-Forwarded-For (the one the proxy itself appended).
func FromRequest(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			return Of(strings.TrimSpace(parts[len(parts)-1]))
		}
	}
	return Of(r.RemoteAddr)
}
