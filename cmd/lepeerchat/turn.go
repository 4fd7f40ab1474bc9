package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"lepeerchat/turn"
)

// turnConfig is what the STUN/TURN flags set.
type turnConfig struct {
	Enabled    bool
	Listen     string
	TLSListen  string
	PublicIP   netip.Addr
	Host       string
	MinPort    uint16
	MaxPort    uint16
	AllowPeers []netip.Prefix
	MaxAllocs  int
	// MaxAllocsPerIP is 0 for the server's default.
	MaxAllocsPerIP int
	// ReservePercent is 0 for no reserve.
	ReservePercent int
	Secret         string
	TTL            time.Duration
	ICEServers     []turn.ICEServer
}

// turnFlagValues holds the raw text of the flags that need parsing.
type turnFlagValues struct {
	publicIP, host, relayPorts, allowPeers, iceServers string
}

// registerTURNFlags declares the STUN/TURN flags on fs.
func registerTURNFlags(fs *flag.FlagSet, c *turnConfig, v *turnFlagValues) {
	fs.BoolVar(&c.Enabled, "turn", true, "run the built-in STUN/TURN server")
	fs.StringVar(&c.Listen, "turn-listen", ":"+strconv.Itoa(turn.DefaultPort), "`address` (UDP and TCP) of the built-in STUN/TURN server")
	fs.StringVar(&c.TLSListen, "turn-tls-listen", "", "`address` for TURN over TLS (e.g. :5349); needs -tls-cert and -tls-key")
	fs.StringVar(&v.publicIP, "turn-public-ip", "", "public IPv4 `address` of this server, given to browsers as the relay address; set it behind NAT or in a container (default: guessed from the network interfaces)")
	fs.StringVar(&v.host, "turn-host", "", "host `name` or address in the STUN/TURN URLs given to browsers (default: the host the browser reached the web server at)")
	fs.StringVar(&v.relayPorts, "turn-relay-ports", fmt.Sprintf("%d-%d", turn.DefaultMinRelayPort, turn.DefaultMaxRelayPort), "`range` of ports for relay sockets")
	fs.StringVar(&v.allowPeers, "turn-allow-peer", "", "comma-separated `ranges` (CIDR) of private, loopback or link-local addresses the relay may send to (by default only public addresses)")
	fs.IntVar(&c.MaxAllocs, "turn-max-allocations", turn.DefaultMaxAllocationsPerMember, "relays one member may hold at once")
	fs.IntVar(&c.MaxAllocsPerIP, "turn-max-allocations-per-ip", 0, fmt.Sprintf("relays one client address (IPv4, or IPv6 /64) may hold at once across all its members (0: %d, or half the relay port range if that is smaller)", turn.DefaultMaxAllocationsPerAddress))
	fs.IntVar(&c.ReservePercent, "turn-relay-reserve", turn.DefaultRelayReservePercent, "`percent` of the relay port range kept in reserve: once only that many ports are free, an address holding its fair share of the others gets no more (0: no reserve)")
	fs.StringVar(&c.Secret, "turn-secret", "", "shared `secret` of the TURN credentials (coturn's static-auth-secret), the same on every node; prefer LEPEERCHAT_TURN_SECRET (default: generated once and kept in the data folder as turn-secret)")
	fs.DurationVar(&c.TTL, "turn-credential-ttl", turn.DefaultCredentialTTL, "lifetime of the TURN credentials given to browsers; new ones are sent before they expire")
	fs.StringVar(&v.iceServers, "ice-servers", "", "external STUN/TURN `servers` for browsers: comma-separated stun:, turn:, turns: URLs or a JSON array of RTCIceServer; TURN servers without credentials get credentials minted with the shared secret")
}

// parseTURNFlags checks the STUN/TURN flags and fills in their parsed
// values. It touches nothing on disk.
func parseTURNFlags(c *turnConfig, v *turnFlagValues) error {
	if v.publicIP != "" {
		ip, err := netip.ParseAddr(v.publicIP)
		if err != nil || !ip.Unmap().Is4() {
			return fmt.Errorf("-turn-public-ip %q: want an IPv4 address", v.publicIP)
		}
		c.PublicIP = ip.Unmap()
	}
	if v.host != "" {
		if c.Host = turn.URLHost(v.host); c.Host == "" {
			return fmt.Errorf("-turn-host %q: want a host name or an IP address", v.host)
		}
	}
	lo, hi, ok := strings.Cut(v.relayPorts, "-")
	first, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	last, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if !ok || err1 != nil || err2 != nil || first == 0 || last < first {
		return fmt.Errorf("-turn-relay-ports %q: want a range of ports such as 49152-65535", v.relayPorts)
	}
	c.MinPort, c.MaxPort = uint16(first), uint16(last)
	allow, err := turn.ParsePrefixes(v.allowPeers)
	if err != nil {
		return fmt.Errorf("-turn-allow-peer: %w", err)
	}
	c.AllowPeers = allow
	servers, err := turn.ParseICEServers(v.iceServers)
	if err != nil {
		return fmt.Errorf("-ice-servers: %w", err)
	}
	c.ICEServers = servers
	for _, a := range []struct{ flag, addr string }{{"-turn-listen", c.Listen}, {"-turn-tls-listen", c.TLSListen}} {
		if a.addr == "" && a.flag == "-turn-tls-listen" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: want host:port or :port", a.flag, a.addr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%s %q: bad port", a.flag, a.addr)
		}
	}
	if c.MaxAllocs <= 0 || c.TTL < time.Minute {
		return errors.New("-turn-max-allocations must be positive and -turn-credential-ttl at least 1m")
	}
	if c.MaxAllocsPerIP < 0 || c.ReservePercent < 0 || c.ReservePercent > 90 {
		return errors.New("-turn-max-allocations-per-ip must not be negative, and -turn-relay-reserve must be 0 to 90")
	}
	if c.Secret != "" && len(c.Secret) < 16 {
		return errors.New("-turn-secret must have at least 16 characters")
	}
	return nil
}

// startICE starts the built-in STUN/TURN server unless it is off and
// returns the provider of the members' ICE servers, and a function that
// stops the server.
func startICE(cfg *config, logger *slog.Logger) (*turn.Provider, func(), error) {
	tc := cfg.turn
	if tc.Enabled && tc.TLSListen != "" && cfg.web.CertFile == "" {
		return nil, nil, errors.New("-turn-tls-listen needs -tls-cert and -tls-key: TURN over TLS uses those certificate files")
	}
	secret := tc.Secret
	if secret == "" {
		var err error
		if secret, err = turn.LoadOrCreateSecret(cfg.web.DataDir, nil); err != nil {
			return nil, nil, err
		}
	}
	p := &turn.Provider{Secret: secret, TTL: tc.TTL, Host: tc.Host, External: tc.ICEServers}
	stop := func() {}
	if tc.Enabled {
		var tlsCfg *tls.Config
		if tc.TLSListen != "" {
			certs := &certReloader{certFile: cfg.web.CertFile, keyFile: cfg.web.KeyFile}
			if _, err := certs.GetCertificate(nil); err != nil {
				return nil, nil, err
			}
			tlsCfg = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
		}
		srv, err := turn.Start(turn.Config{
			Secret:                   secret,
			Listen:                   tc.Listen,
			TLSListen:                tc.TLSListen,
			TLSConfig:                tlsCfg,
			PublicIP:                 tc.PublicIP,
			MinRelayPort:             tc.MinPort,
			MaxRelayPort:             tc.MaxPort,
			Peers:                    turn.PeerPolicy{Allow: tc.AllowPeers},
			MaxAllocationsPerMember:  tc.MaxAllocs,
			MaxAllocationsPerAddress: tc.MaxAllocsPerIP,
			RelayReservePercent:      reservePercent(tc.ReservePercent),
			Revocations:              cfg.signal.Store,
			CredentialTTL:            tc.TTL,
			Logger:                   logger,
		})
		if err != nil {
			return nil, nil, err
		}
		p.Builtin = srv
		stop = func() {
			if err := srv.Close(); err != nil {
				logger.Warn("close the STUN/TURN server", "err", err)
			}
		}
		args := []any{"port", srv.Port(), "relay-ip", srv.PublicIP().String(), "relay-ports", fmt.Sprintf("%d-%d", tc.MinPort, tc.MaxPort)}
		if srv.TLSPort() != 0 {
			args = append(args, "tls-port", srv.TLSPort())
		}
		logger.Info("STUN/TURN server listening", args...)
		if !tc.PublicIP.IsValid() && !(turn.PeerPolicy{}).Allowed(srv.PublicIP()) {
			logger.Warn("the relay address was guessed and is not public; set -turn-public-ip to this server's public address if browsers reach it from the Internet", "relay-ip", srv.PublicIP().String())
		}
	} else if len(tc.ICEServers) == 0 {
		logger.Warn("no STUN/TURN server: browsers that cannot reach each other directly will not connect (see -turn and -ice-servers)")
	}
	return p, stop, nil
}

// reservePercent turns the flag's "0: no reserve" into turn.Config's.
func reservePercent(flag int) int {
	if flag == 0 {
		return -1
	}
	return flag
}

// certReloader serves the certificate files to TURN over TLS, reading them
// again when they change on disk (as the web server does on SIGHUP).
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
}

func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var mod time.Time
	for _, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(mod) {
			mod = fi.ModTime()
		}
	}
	if c.cert != nil && !mod.After(c.modTime) {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil // keep the previous one while the files are being replaced
		}
		return nil, fmt.Errorf("TURN over TLS: load certificate: %w", err)
	}
	c.cert, c.modTime = &cert, mod
	return c.cert, nil
}
