package turn

import (
	"net/netip"
	"testing"
)

func TestPeerPolicy(t *testing.T) {
	deny := PeerPolicy{}
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"8.8.8.8", true},
		{"203.0.113.9", true},  // documentation: allowed, see deniedPeers
		{"198.51.100.1", true}, // documentation
		{"2606:4700::1111", true},
		{"127.0.0.1", false},
		{"127.255.0.9", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false}, // IPv4-mapped loopback
		{"10.0.0.1", false},
		{"172.16.5.4", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"::ffff:192.168.1.1", false},
		{"fd00::1", false},
		{"169.254.169.254", false}, // cloud metadata service
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"224.0.0.251", false},
		{"239.255.255.250", false},
		{"ff02::1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"100.64.0.1", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"198.18.0.1", false},
		{"2002:7f00:1::", false},      // 6to4 wrapping 127.0.0.1
		{"64:ff9b::a00:1", false},     // NAT64 wrapping 10.0.0.1
		{"2001:0:4136:e378::", false}, // Teredo
	} {
		if got := deny.Allowed(netip.MustParseAddr(tc.addr)); got != tc.ok {
			t.Errorf("Allowed(%s) = %v, want %v", tc.addr, got, tc.ok)
		}
	}
	if deny.Allowed(netip.Addr{}) {
		t.Error("the invalid address is allowed")
	}

	allow, err := ParsePrefixes(" 10.0.0.0/8, 127.0.0.1 ,fd00::/8,")
	if err != nil {
		t.Fatal(err)
	}
	p := PeerPolicy{Allow: allow}
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"10.1.2.3", true},
		{"::ffff:10.1.2.3", true},
		{"127.0.0.1", true},
		{"127.0.0.2", false},
		{"fd12::1", true},
		{"192.168.1.1", false},
		{"8.8.8.8", true},
	} {
		if got := p.Allowed(netip.MustParseAddr(tc.addr)); got != tc.ok {
			t.Errorf("with %v: Allowed(%s) = %v, want %v", allow, tc.addr, got, tc.ok)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes("10.1.2.3/8,::ffff:192.0.2.1, 2001:db8::1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::1/128"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.org", "10.0.0", "1.2.3.4/x"} {
		if _, err := ParsePrefixes(bad); err == nil {
			t.Errorf("ParsePrefixes(%q) succeeded", bad)
		}
	}
	if got, err := ParsePrefixes(" , "); err != nil || len(got) != 0 {
		t.Errorf("ParsePrefixes of separators = %v, %v", got, err)
	}
}
