package turn

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestProviderBuiltin(t *testing.T) {
	s := startTURN(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 500, time.UTC)
	p := &Provider{Secret: testSecret, TTL: 2 * time.Hour, Builtin: s, Now: func() time.Time { return now }}
	port := s.Port()

	servers, expires := p.ICEServers("memberA", "chat.example.org:8443")
	if want := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC); !expires.Equal(want) {
		t.Errorf("expires %v, want %v", expires, want)
	}
	user, pass := Mint(testSecret, "memberA", expires)
	want := []ICEServer{
		{URLs: []string{fmt.Sprintf("stun:chat.example.org:%d", port)}},
		{URLs: []string{
			fmt.Sprintf("turn:chat.example.org:%d?transport=udp", port),
			fmt.Sprintf("turn:chat.example.org:%d?transport=tcp", port),
		}, Username: user, Credential: pass},
	}
	if !reflect.DeepEqual(servers, want) {
		t.Errorf("servers\n%+v\nwant\n%+v", servers, want)
	}
	if m, err := Verify(testSecret, servers[1].Username, servers[1].Credential, now); err != nil || m != "memberA" {
		t.Errorf("minted credentials do not verify: %q %v", m, err)
	}

	for _, tc := range []struct{ host, want string }{
		{"Chat.Example.Org", "chat.example.org"},
		{"chat.example.org.", "chat.example.org"},
		{"192.0.2.4:443", "192.0.2.4"},
		{"[2001:db8::1]:8443", "[2001:db8::1]"},
		{"[::ffff:192.0.2.4]", "192.0.2.4"},
		{"localhost", "localhost"},
	} {
		servers, _ := p.ICEServers("memberA", tc.host)
		if len(servers) != 2 || servers[0].URLs[0] != fmt.Sprintf("stun:%s:%d", tc.want, port) {
			t.Errorf("host %q: servers %+v, want host %s", tc.host, servers, tc.want)
		}
	}
	// A Host header that is no host name gives no built-in server rather
	// than a broken or injected URL.
	for _, bad := range []string{"", "exa mple.org", "a?transport=tcp", "evil.org/x", "[fe80::1%eth0]", "-a.org", "a..b"} {
		if servers, exp := p.ICEServers("memberA", bad); len(servers) != 0 || !exp.IsZero() {
			t.Errorf("host %q: servers %+v, expiry %v", bad, servers, exp)
		}
	}

	// A configured host wins over the Host header.
	p.Host = "turn.example.org"
	servers, _ = p.ICEServers("memberA", "chat.example.org")
	if got := servers[0].URLs[0]; got != fmt.Sprintf("stun:turn.example.org:%d", port) {
		t.Errorf("with Host set: %s", got)
	}
}

func TestProviderTURNS(t *testing.T) {
	cert := selfSigned(t)
	s := startTURN(t, func(c *Config) {
		c.TLSListen = "127.0.0.1:0"
		c.TLSConfig = tlsConfigOf(cert)
	})
	p := &Provider{Secret: testSecret, Builtin: s}
	servers, expires := p.ICEServers("m", "chat.example.org")
	urls := servers[1].URLs
	if want := fmt.Sprintf("turns:chat.example.org:%d?transport=tcp", s.TLSPort()); urls[len(urls)-1] != want {
		t.Errorf("URLs %v, want the last to be %s", urls, want)
	}
	if d := time.Until(expires); d < DefaultCredentialTTL-time.Minute || d > DefaultCredentialTTL {
		t.Errorf("default lifetime: expires in %v", d)
	}
}

func TestProviderExternal(t *testing.T) {
	ext, err := ParseICEServers(`[
		{"urls": "stun:stun.example.org"},
		{"urls": ["turn:coturn.example.org:3478?transport=udp", "turns:coturn.example.org:5349?transport=tcp"]},
		{"urls": "turn:static.example.org", "username": "fixed", "credential": "pw"}
	]`)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Secret: testSecret, External: ext}
	servers, expires := p.ICEServers("memberA", "chat.example.org")
	if len(servers) != 3 || expires.IsZero() {
		t.Fatalf("servers %+v, expires %v", servers, expires)
	}
	if servers[0].Username != "" || servers[0].Credential != "" {
		t.Errorf("a STUN server got credentials: %+v", servers[0])
	}
	if m, err := Verify(testSecret, servers[1].Username, servers[1].Credential, time.Now()); err != nil || m != "memberA" {
		t.Errorf("coturn credentials %+v do not verify: %v", servers[1], err)
	}
	if servers[2].Username != "fixed" || servers[2].Credential != "pw" {
		t.Errorf("static credentials changed: %+v", servers[2])
	}
	// The parsed list is not modified by minting.
	if ext[1].Username != "" {
		t.Error("minting wrote into the configured list")
	}

	// STUN only: nothing minted, no expiry.
	stunOnly, err := ParseICEServers("stun:stun.example.org:3478, stun:[2001:db8::1]")
	if err != nil {
		t.Fatal(err)
	}
	servers, expires = (&Provider{Secret: testSecret, External: stunOnly}).ICEServers("memberA", "")
	if len(servers) != 2 || !expires.IsZero() {
		t.Errorf("servers %+v, expires %v", servers, expires)
	}
	// Nothing at all: an empty list.
	if servers, _ := (&Provider{Secret: testSecret}).ICEServers("memberA", "chat.example.org"); len(servers) != 0 {
		t.Errorf("servers %+v", servers)
	}
}

func TestParseICEServersRefusesBadInput(t *testing.T) {
	for _, bad := range []string{
		"http://example.org",
		"stun:",
		"stun:example.org?transport=udp",
		"turn:example.org?transport=sctp",
		"turn:example.org:0",
		"turn:example.org:99999",
		"turn:exa mple.org",
		"example.org:3478",
		`[{"urls": 5}]`,
		`[{"urls": []}]`,
		`[{"urls": "turn:a.org", "username": "u"}]`,
		`[{"urls": "turn:a.org", "extra": 1}]`,
		`[{"urls": "turn:a.org"}`,
	} {
		if got, err := ParseICEServers(bad); err == nil {
			t.Errorf("ParseICEServers(%q) = %+v", bad, got)
		} else if !strings.Contains(err.Error(), "ICE server") {
			t.Errorf("ParseICEServers(%q): error %q does not say what it is about", bad, err)
		}
	}
	if got, err := ParseICEServers("  "); err != nil || got != nil {
		t.Errorf("empty: %v %v", got, err)
	}
}
