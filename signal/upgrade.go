package signal

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// upgrade answers a WebSocket opening handshake (RFC 6455, section 4.2)
// and takes the connection from the HTTP server. It refuses, with an
// HTTP error (docs/protocol.md, section 1.1), a request that is not a
// WebSocket handshake or that comes from a page of another origin than
// the server's own or one of originPatterns (see checkOrigin). The
// subprotocol is chosen when the client offers it; a client that offers
// none gets none.
//
// It returns the connection and any bytes the client sent after its
// request that the HTTP server had already read.
func upgrade(w http.ResponseWriter, r *http.Request, originPatterns []string) (conn net.Conn, early []byte, err error) {
	if status, err := checkHandshake(r); err != nil {
		switch status {
		case http.StatusUpgradeRequired:
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "websocket")
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", http.MethodGet)
		}
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, err.Error(), status)
		return nil, nil, err
	}
	if err := checkOrigin(r, originPatterns); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return nil, nil, err
	}
	h := w.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", acceptKey(r.Header.Get("Sec-WebSocket-Key")))
	if offers(r.Header, "Sec-WebSocket-Protocol", Subprotocol) {
		h.Set("Sec-WebSocket-Protocol", Subprotocol)
	}
	// The answer goes out as the connection is taken (net/http flushes
	// a written header when it hands the connection over).
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("websocket: take the connection: %w", err)
	}
	// A client should wait for the answer before it sends frames;
	// whatever the HTTP server read ahead all the same is kept.
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ = brw.Reader.Peek(n)
		early = append([]byte(nil), early...)
	}
	return conn, early, nil
}

// checkHandshake checks that r asks for a WebSocket connection, and
// says with which HTTP status to refuse it if not.
func checkHandshake(r *http.Request) (int, error) {
	switch {
	case !offers(r.Header, "Connection", "upgrade"):
		return http.StatusUpgradeRequired, errors.New(`websocket: the handshake needs "Connection: Upgrade"`)
	case !offers(r.Header, "Upgrade", "websocket"):
		return http.StatusUpgradeRequired, errors.New(`websocket: the handshake needs "Upgrade: websocket"`)
	case r.Method != http.MethodGet:
		return http.StatusMethodNotAllowed, errors.New("websocket: the handshake is a GET request")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return http.StatusBadRequest, errors.New("websocket: only version 13 is spoken")
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
	if err != nil || len(key) != 16 {
		return http.StatusBadRequest, errors.New("websocket: Sec-WebSocket-Key is not 16 bytes in base64")
	}
	return 0, nil
}

// checkOrigin lets a request in when it names no origin (not a browser),
// when its origin is the server's own host, or when the origin's host
// matches one of patterns (or its scheme://host, for a pattern with a
// scheme).
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("websocket: origin %q is not a URL with a host", origin)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	host := strings.ToLower(u.Host)
	withScheme := strings.ToLower(u.Scheme) + "://" + host
	for _, p := range patterns {
		target := host
		if strings.Contains(p, "://") {
			target = withScheme
		}
		if ok, err := path.Match(strings.ToLower(p), target); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("websocket: pages of %q may not connect here", origin)
}

// offers tells whether a comma-separated header lists token
// (case-insensitively).
func offers(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// acceptKey is the Sec-WebSocket-Accept answering key (section 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}
