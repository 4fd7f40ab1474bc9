package clientaddr

import (
	"net/http/httptest"
	"testing"
)

func TestOfCountsAnIPv6SubscriberAsOneClient(t *testing.T) {
	tests := []struct {
		name, addr, want string
	}{
		{"ipv4 with port", "203.0.113.5:4431", "203.0.113.5"},
		{"ipv4 alone", "203.0.113.5", "203.0.113.5"},
		{"ipv6 with port", "[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"another address of the same /64", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"the next /64 is another client", "2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"ipv4-mapped ipv6 is its ipv4 address", "[::ffff:198.51.100.7]:80", "198.51.100.7"},
		{"a zone is dropped", "fe80::1%eth0", "fe80::/64"},
		{"loopback ipv6", "[::1]:8443", "::/64"},
		{"not an address stays itself", "pipe", "pipe"},
		{"empty stays empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Of(tt.addr); got != tt.want {
				t.Errorf("Of(%q) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestWideCountsASiteAsOne(t *testing.T) {
	tests := []struct {
		name, addr, want string
	}{
		{"ipv4 by its /24", "203.0.113.5:4431", "203.0.113.0/24"},
		{"another address of the /24", "203.0.113.250", "203.0.113.0/24"},
		{"the next /24", "203.0.114.1", "203.0.114.0/24"},
		{"ipv6 by its /48", "[2001:db8:1:2:aaaa::1]:443", "2001:db8:1::/48"},
		{"another /64 of the /48", "2001:db8:1:ffff::1", "2001:db8:1::/48"},
		{"the next /48", "2001:db8:2::1", "2001:db8:2::/48"},
		{"a client key of Of", "2001:db8:1:2::/64", "2001:db8:1::/48"},
		{"an ipv4 client key of Of", "198.51.100.7", "198.51.100.0/24"},
		{"ipv4-mapped ipv6 by its ipv4 /24", "[::ffff:198.51.100.7]:80", "198.51.100.0/24"},
		{"a zone is dropped", "fe80::1%eth0", "fe80::/48"},
		{"not an address stays itself", "pipe", "pipe"},
		{"empty stays empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Wide(tt.addr); got != tt.want {
				t.Errorf("Wide(%q) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestFromRequestTrustsOnlyTheProxysOwnEntry(t *testing.T) {
	tests := []struct {
		name, remote, xff string
		trust             bool
		want              string
	}{
		{"peer address without trust", "192.0.2.1:5000", "198.51.100.9", false, "192.0.2.1"},
		{"last forwarded entry with trust", "127.0.0.1:5000", "6.6.6.6, 198.51.100.9", true, "198.51.100.9"},
		{"forwarded ipv6 by its /64", "127.0.0.1:5000", "2001:db8::1", true, "2001:db8::/64"},
		{"no header falls back to the peer", "192.0.2.1:5000", "", true, "192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := FromRequest(r, tt.trust); got != tt.want {
				t.Errorf("FromRequest = %q, want %q", got, tt.want)
			}
		})
	}
}
