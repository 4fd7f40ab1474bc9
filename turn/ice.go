package turn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ICEServer is one entry of a browser's RTCConfiguration.iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Provider builds the ICE servers a member's browser is given: the
// built-in server's, and the operator's external ones, with TURN
// credentials minted for the member. It is safe for concurrent use once
// set up.
type Provider struct {
	// Secret mints the credentials of the built-in server and of the
	// external TURN servers listed without credentials.
	Secret string
	// TTL is the lifetime of minted credentials. Default 4 h.
	TTL time.Duration

	// Builtin is the built-in server, or nil when it is off.
	Builtin *Server
	// Host, when set, is the host name or address put in the built-in
	// server's URLs. Otherwise the host the browser used to reach the web
	// server is used.
	Host string

	// External lists the operator's STUN/TURN servers (ParseICEServers).
	External []ICEServer

	// Now is the clock; default time.Now.
	Now func() time.Time
}

// ICEServers returns the servers for member, whose browser reached the web
// server as host (a Host header: a name or address, with or without a
// port), and when their credentials expire (the zero time when none were
// minted). Built-in URLs are left out when no usable host is known.
func (p *Provider) ICEServers(member, host string) ([]ICEServer, time.Time) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = DefaultCredentialTTL
	}
	// Whole seconds, so that the time announced is the one in the username.
	expires := time.Unix(now().Add(ttl).Unix(), 0).UTC()
	var (
		out    []ICEServer
		minted bool
	)
	mint := func(urls []string) ICEServer {
		minted = true
		user, pass := Mint(p.Secret, member, expires)
		return ICEServer{URLs: urls, Username: user, Credential: pass}
	}
	if p.Builtin != nil {
		h := p.Host
		if h == "" {
			h = URLHost(host)
		}
		if h != "" {
			port := strconv.Itoa(p.Builtin.Port())
			hp := net.JoinHostPort(h, port)
			out = append(out, ICEServer{URLs: []string{"stun:" + hp}})
			urls := []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
			if tp := p.Builtin.TLSPort(); tp != 0 {
				urls = append(urls, "turns:"+net.JoinHostPort(h, strconv.Itoa(tp))+"?transport=tcp")
			}
			out = append(out, mint(urls))
		}
	}
	for _, s := range p.External {
		if s.Username == "" && s.Credential == "" && needsCredentials(s.URLs) {
			out = append(out, mint(s.URLs))
			continue
		}
		out = append(out, s)
	}
	if !minted {
		return out, time.Time{}
	}
	return out, expires
}

// Revoke closes a departed member's relays on the built-in server and
// refuses its credentials there (Server.Revoke). External servers only see
// the credentials expire.
func (p *Provider) Revoke(ctx context.Context, member string) error {
	if p.Builtin == nil {
		return nil
	}
	return p.Builtin.Revoke(ctx, member)
}

// URLHost turns a Host header into the host part of a STUN/TURN URL: the
// name or address without its port, lower case; "" when it is neither a
// DNS name nor an IP address.
func URLHost(hostHeader string) string {
	h := hostHeader
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return ""
		}
		return ip.Unmap().String()
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if !isDNSName(h) {
		return ""
	}
	return h
}

func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// needsCredentials tells whether a server's URLs include a TURN one.
func needsCredentials(urls []string) bool {
	for _, u := range urls {
		if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
			return true
		}
	}
	return false
}

// ParseICEServers reads the operator's external servers: either a JSON
// array of RTCIceServer objects ({"urls": "turn:…" or ["…"], "username",
// "credential"}), or a comma-separated list of stun:, stuns:, turn: and
// turns: URLs. TURN servers given without a username and credential get
// credentials minted with the shared secret (a coturn with
// static-auth-secret set to the same secret accepts them); with them, they
// are passed on as they are.
func ParseICEServers(s string) ([]ICEServer, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []ICEServer
	if strings.HasPrefix(s, "[") {
		var raw []struct {
			URLs       json.RawMessage `json:"urls"`
			Username   string          `json:"username"`
			Credential string          `json:"credential"`
		}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("ICE servers JSON: %w", err)
		}
		for i, r := range raw {
			var urls []string
			var one string
			if err := json.Unmarshal(r.URLs, &one); err == nil {
				urls = []string{one}
			} else if err := json.Unmarshal(r.URLs, &urls); err != nil {
				return nil, fmt.Errorf("ICE server %d: \"urls\" must be a string or an array of strings", i)
			}
			if len(urls) == 0 {
				return nil, fmt.Errorf("ICE server %d has no URL", i)
			}
			if (r.Username == "") != (r.Credential == "") {
				return nil, fmt.Errorf("ICE server %d: give both a username and a credential, or neither", i)
			}
			out = append(out, ICEServer{URLs: urls, Username: r.Username, Credential: r.Credential})
		}
	} else {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				out = append(out, ICEServer{URLs: []string{u}})
			}
		}
	}
	for _, srv := range out {
		for _, u := range srv.URLs {
			if err := checkICEURL(u); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

var errICEURL = errors.New("want stun:, stuns:, turn: or turns: followed by host[:port]")

// checkICEURL checks the shape of a STUN or TURN URL (RFC 7064, RFC 7065).
func checkICEURL(u string) error {
	scheme, rest, ok := strings.Cut(u, ":")
	switch {
	case !ok:
		return fmt.Errorf("ICE server URL %q: %w", u, errICEURL)
	case scheme != "stun" && scheme != "stuns" && scheme != "turn" && scheme != "turns":
		return fmt.Errorf("ICE server URL %q: %w", u, errICEURL)
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery && (strings.HasPrefix(scheme, "stun") || (query != "transport=udp" && query != "transport=tcp")) {
		return fmt.Errorf("ICE server URL %q: only turn: and turns: URLs take a query, ?transport=udp or ?transport=tcp", u)
	}
	host := hostport
	if h, port, err := net.SplitHostPort(hostport); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("ICE server URL %q: bad port", u)
		}
		host = h
	}
	if URLHost(host) == "" {
		return fmt.Errorf("ICE server URL %q: %w", u, errICEURL)
	}
	return nil
}
