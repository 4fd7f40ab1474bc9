package web

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"lepeerchat/internal/clientaddr"
)

// Defaults of the connection caps, applied by New to zero fields of Config.
const (
	DefaultMaxConnsPerClient = 64
	DefaultMaxConns          = 4096
)

// refusalSlack is how many connections past a cap are still taken in, to
// be told why they are refused (429 or 503); past the cap and the slack a
// connection is closed as soon as it is accepted, before any TLS handshake,
// so that a client over its cap cannot make the server pay for more
// handshakes or hold more descriptors than cap + slack.
const refusalSlack = 8

// The reasons given to Config.OnRefuse.
const (
	RefusedClient = "client" // answered 429: the client's cap
	RefusedServer = "server" // answered 503: the server's cap
	RefusedClosed = "closed" // closed as accepted, past a cap and the slack
)

// verdict is what the connection caps said of a connection or a request.
type verdict int

const (
	admitted   verdict = iota
	overClient         // its client holds as many as it may: 429
	overTotal          // the server holds as many as it may: 503
)

// tally counts what each client holds at once, against a cap per client
// and a cap for all clients together. The client "" is counted only in
// the total. For connections, it also keeps those of each client that
// wait idle between requests (kept alive), so that a new connection of a
// client at its cap can take the place of the one idle longest.
type tally struct {
	perClient, total int

	mu       sync.Mutex
	byClient map[string]int
	all      int
	// idle holds the idle connections of each client, each with the
	// sequence number of when it went idle (seq counts up).
	idle map[string]map[*limitedConn]uint64
	seq  uint64
}

func newTally(perClient, total int) *tally {
	return &tally{perClient: perClient, total: total, byClient: map[string]int{}, idle: map[string]map[*limitedConn]uint64{}}
}

// setIdle notes whether c waits idle for its next request; a connection
// already uncounted is never noted idle again.
func (t *tally) setIdle(c *limitedConn, idle bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.noteIdle(c, idle && !c.gone)
}

// noteIdle is setIdle with t.mu held.
func (t *tally) noteIdle(c *limitedConn, idle bool) {
	set := t.idle[c.client]
	if !idle {
		delete(set, c)
		if len(set) == 0 {
			delete(t.idle, c.client)
		}
		return
	}
	if set == nil {
		set = map[*limitedConn]uint64{}
		t.idle[c.client] = set
	}
	t.seq++
	set[c] = t.seq
}

// idlest returns, when client holds as many as its cap, its connection
// idle longest, no longer noted idle, for the caller to close; else nil.
func (t *tally) idlest(client string) *limitedConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if client == "" || t.byClient[client] < t.perClient {
		return nil
	}
	var (
		oldest *limitedConn
		at     uint64
	)
	for c, seq := range t.idle[client] {
		if oldest == nil || seq < at {
			oldest, at = c, seq
		}
	}
	if oldest != nil {
		delete(t.idle[client], oldest)
		if len(t.idle[client]) == 0 {
			delete(t.idle, client)
		}
	}
	return oldest
}

// take counts one more for client unless that would put it, or everyone,
// more than slack past a cap; counted says whether it did. A counted one
// past a cap gets the verdict to refuse it with; give must be called once
// for each counted one.
func (t *tally) take(client string, slack int) (v verdict, counted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.byClient[client]
	switch {
	case client != "" && n >= t.perClient+slack:
		return overClient, false
	case t.all >= t.total+slack:
		return overTotal, false
	}
	t.all++
	if client != "" {
		t.byClient[client] = n + 1
	}
	switch {
	case client != "" && n >= t.perClient:
		return overClient, true
	case t.all > t.total:
		return overTotal, true
	}
	return admitted, true
}

// drop uncounts the connection c, counted by take, for good.
func (t *tally) drop(c *limitedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.gone = true
	t.noteIdle(c, false)
	t.giveLocked(c.client)
}

// give uncounts one counted by take.
func (t *tally) give(client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.giveLocked(client)
}

// giveLocked is give with t.mu held.
func (t *tally) giveLocked(client string) {
	t.all--
	if client == "" {
		return
	}
	if t.byClient[client]--; t.byClient[client] <= 0 {
		delete(t.byClient, client)
	}
}

// limitedListener counts the connections it accepts in a tally until
// net/http is done with them: closed, or taken over by the WebSocket
// handler (which then counts them under its own cap). A connection more
// than refusalSlack past a cap is closed at once.
type limitedListener struct {
	net.Listener
	conns *tally
	// byClient counts per client address; false behind a trusted proxy,
	// where every connection comes from the proxy and only the total is
	// capped (requests are then capped per forwarded address instead).
	byClient bool
	refused  func(reason string) // see Server.refused
}

// Accept returns the next connection within the caps (or their slack),
// closing the others as they come.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := ""
		if l.byClient {
			client = clientaddr.Of(c.RemoteAddr().String())
		}
		// A client at its cap (many browsers behind one NAT) gets a place
		// from its connection idle longest before it is refused: an idle
		// keep-alive connection costs its browser only a new handshake.
		if idle := l.conns.idlest(client); idle != nil {
			idle.Close()
		}
		v, counted := l.conns.take(client, refusalSlack)
		if !counted {
			l.refused(RefusedClosed) // first, so that it is counted once the client sees the close
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, conns: l.conns, client: client, verdict: v}, nil
	}
}

// limitedConn is a connection counted by a limitedListener.
type limitedConn struct {
	net.Conn
	conns   *tally
	client  string
	verdict verdict
	once    sync.Once
	gone    bool // uncounted; guarded by conns.mu
}

// release uncounts the connection, once.
func (c *limitedConn) release() { c.once.Do(func() { c.conns.drop(c) }) }

// Close closes the connection and uncounts it.
func (c *limitedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// limitedOf returns the limitedConn under c (a *tls.Conn or the
// limitedConn itself), or nil.
func limitedOf(c net.Conn) *limitedConn {
	if t, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = t.NetConn()
	}
	lc, _ := c.(*limitedConn)
	return lc
}

// connVerdictKey keys a connection's verdict in its requests' contexts.
type connVerdictKey struct{}

// connContext hands a connection's verdict to its requests (HTTP/1 and
// HTTP/2 alike); it is http.Server.ConnContext.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc := limitedOf(c); lc != nil && lc.verdict != admitted {
		return context.WithValue(ctx, connVerdictKey{}, lc.verdict)
	}
	return ctx
}

// connState notes when a connection waits idle for its next request and
// when it serves one again, and uncounts it when net/http is done with it;
// it is http.Server.ConnState. A hijacked connection is a WebSocket from then on,
// counted by the signalling server's own cap, and the server's read and
// write timeouts must not cut it: its deadlines are lifted here, before the
// WebSocket handler gets it (net/http.Hijacker leaves that to the caller),
// and the signalling server sets its own.
func connState(c net.Conn, state http.ConnState) {
	lc := limitedOf(c)
	switch state {
	case http.StateIdle, http.StateActive:
		if lc != nil {
			lc.conns.setIdle(lc, state == http.StateIdle)
		}
		return
	case http.StateHijacked:
		c.SetDeadline(time.Time{})
	case http.StateClosed:
	default:
		return
	}
	if lc != nil {
		lc.release()
	}
}

// limitRequests refuses the requests of a connection taken in past a cap,
// and counts the requests in progress of each client (by its forwarded
// address behind a trusted proxy, where connections say nothing of who
// sends them), refusing those past the same caps. A refusal is 429 when the
// client is over its cap, 503 when the server as a whole is, and closes the
// connection. The WebSocket path is not wrapped: a WebSocket handshake,
// even on a connection past the cap, goes to the signalling server, which
// applies its own cap per address.
func (s *Server) limitRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := r.Context().Value(connVerdictKey{}).(verdict)
		if v == admitted {
			client := clientaddr.FromRequest(r, s.cfg.TrustProxy)
			var counted bool
			if v, counted = s.requests.take(client, 0); counted {
				defer s.requests.give(client)
			}
		}
		switch v {
		case overClient:
			s.refused(RefusedClient)
			refuse(w, http.StatusTooManyRequests, "429 too many connections from your address")
		case overTotal:
			s.refused(RefusedServer)
			refuse(w, http.StatusServiceUnavailable, "503 the server is at its connection limit")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// refused tells Config.OnRefuse, if set, of a refusal.
func (s *Server) refused(reason string) {
	if s.cfg.OnRefuse != nil {
		s.cfg.OnRefuse(reason)
	}
}

// refuse answers status with msg and closes the connection (over HTTP/2,
// net/http turns "Connection: close" into a GOAWAY).
func refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", "5")
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, status)
}
