package turn

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// deniedPeers are the ranges a relay never sends to unless the operator
// allows them: addresses that lead into the server's own host or network
// rather than to another participant on the Internet. netip's predicates
// cover loopback, private (RFC 1918, fc00::/7), link-local, multicast and
// unspecified; these are the rest. The documentation ranges (192.0.2.0/24,
// 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are not denied: nothing
// routes them, and tests use them as "public" addresses inside their own
// network namespaces.
var deniedPeers = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),      // carrier-grade NAT, shared address space
	netip.MustParsePrefix("192.0.0.0/24"),       // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),      // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),        // reserved, and 255.255.255.255
	netip.MustParsePrefix("64:ff9b:1::/48"),     // local-use NAT64
	netip.MustParsePrefix("100::/64"),           // discard-only
	netip.MustParsePrefix("fec0::/10"),          // deprecated site-local
	netip.MustParsePrefix("2002::/16"),          // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("2001::/32"),          // Teredo: embeds an IPv4 address
	netip.MustParsePrefix("64:ff9b::/96"),       // NAT64: embeds an IPv4 address
	netip.MustParsePrefix("ff00::/8"),           // multicast
	netip.MustParsePrefix("169.254.0.0/16"),     // link-local (also covered by netip)
	netip.MustParsePrefix("224.0.0.0/4"),        // multicast (also covered by netip)
	netip.MustParsePrefix("255.255.255.255/32"), // broadcast
}

// PeerPolicy decides which peer addresses a relay may send to: every
// public address, and the denied kinds (loopback, private, link-local,
// multicast, unspecified, reserved) only inside the ranges in Allow.
type PeerPolicy struct {
	Allow []netip.Prefix
}

// Allowed reports whether a relay may send to ip.
func (p PeerPolicy) Allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, pre := range p.Allow {
		if pre.Contains(ip) {
			return true
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, pre := range deniedPeers {
		if pre.Contains(ip) {
			return false
		}
	}
	return true
}

// allowedIP is Allowed for a net.IP.
func (p PeerPolicy) allowedIP(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && p.Allowed(a)
}

// ParsePrefixes reads a comma-separated list of CIDR ranges or single
// addresses ("10.0.0.0/8, 192.168.1.7").
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("%q is neither an address nor a CIDR range", part)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pre, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range", part)
		}
		out = append(out, pre.Masked())
	}
	return out, nil
}
