package signal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"lepeerchat/internal/clientaddr"
	"lepeerchat/metrics"
	"lepeerchat/room"
	"lepeerchat/store"
)

// Config sets up a Server. Zero values take the defaults documented on each
// field.
type Config struct {
	Store   store.Store
	Bus     store.Bus
	Metrics *metrics.Metrics
	Logger  *slog.Logger

	// Node names this server node in the rooms' connection records. It
	// must be stable across restarts of the node and distinct between
	// nodes sharing a store. Default "main".
	Node string
	// DiscardDelay is how long a room outlives its last connection.
	// Default 30 minutes.
	DiscardDelay time.Duration
	// OriginPatterns lists the host patterns (path.Match syntax, as in
	// websocket.AcceptOptions) allowed to open a WebSocket besides the
	// server's own origin.
	OriginPatterns []string
	// MaxMessageBytes is the largest client message answered normally;
	// larger ones get a too_large error. Default 64 KiB. Messages over 16
	// times this close the connection.
	MaxMessageBytes int
	// Rate and Burst set each connection's token bucket. Default 50/s, 200.
	Rate  rate.Limit
	Burst int
	// MaxConnsPerIP caps simultaneous WebSockets from one address.
	// Default 32.
	MaxConnsPerIP int
	// PeerRate and PeerBurst set the token bucket of the signals one
	// member sends to one other member, on this node: enough for the
	// dozens of candidates of an ICE negotiation, its restarts and
	// renegotiations, not for making another member's browser churn.
	// The excess is refused to the sender (peer_rate_limited). Default
	// 5/s, 100.
	PeerRate  rate.Limit
	PeerBurst int
	// CreateRate and CreateBurst set the token bucket of the rooms one
	// client address may create, on this node. Default one every 10 s
	// (6 a minute), 10.
	CreateRate  rate.Limit
	CreateBurst int
	// WideCreateRate and WideCreateBurst set the token bucket of the rooms
	// all the client addresses of one wider network (clientaddr.Wide: an
	// IPv4 /24, an IPv6 /48) may create together, on this node, so that
	// the /64s of one /48 cannot fill the room cap between them. Default
	// 30 a minute, 30; never less than CreateRate and CreateBurst, since a
	// network holds at least one address (so raising those for a load
	// test from one address raises these too).
	WideCreateRate  rate.Limit
	WideCreateBurst int
	// MaxRooms caps the rooms in the store; a create past it is refused
	// (too_many_rooms). Default 10000.
	MaxRooms int
	// TrustProxy takes the client address from the last X-Forwarded-For
	// entry, for servers behind a reverse proxy.
	TrustProxy bool
	// PingInterval and PongTimeout detect half-open connections. Default
	// 20 s each, so a dead peer is cut within 40 s.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// WriteTimeout bounds one write to a client. Default 10 s.
	WriteTimeout time.Duration
	// IdleAfter is how long a session waits for its client on a goroutine
	// of its own before it parks in the poller, where it holds none
	// (Linux, plain TCP). A client that keeps talking costs no more per
	// message than with a goroutine of its own; one that falls silent
	// costs no stack. Default 1 s.
	IdleAfter time.Duration

	// ICE, when set, gives each member the STUN/TURN servers its browser
	// uses: in the joined reply, then again (ice.servers) before their
	// credentials expire. It is told when a member leaves its room for
	// good or is kicked, so that its relays close. Nil sends none.
	ICE ICEProvider

	// Now and Rand are the clock and the randomness; tests replace them.
	// Defaults time.Now and crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader
}

func (c *Config) setDefaults() error {
	if c.Store == nil || c.Bus == nil {
		return errors.New("signal: config needs a Store and a Bus")
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Node == "" {
		c.Node = "main"
	}
	if strings.Contains(c.Node, "/") {
		return fmt.Errorf("signal: node name %q must not contain '/'", c.Node)
	}
	setDefault(&c.DiscardDelay, 30*time.Minute)
	setDefault(&c.MaxMessageBytes, 64<<10)
	setDefault(&c.Rate, 50)
	for _, r := range []rate.Limit{c.Rate, c.PeerRate, c.CreateRate, c.WideCreateRate} {
		if r := float64(r); math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
			return fmt.Errorf("signal: rate %v must be a finite positive number", r)
		}
	}
	setDefault(&c.Burst, 200)
	setDefault(&c.MaxConnsPerIP, 32)
	setDefault(&c.PeerRate, 5)
	setDefault(&c.PeerBurst, 100)
	setDefault(&c.CreateRate, rate.Every(10*time.Second))
	setDefault(&c.CreateBurst, 10)
	setDefault(&c.WideCreateRate, rate.Every(2*time.Second))
	setDefault(&c.WideCreateBurst, 30)
	c.WideCreateRate = max(c.WideCreateRate, c.CreateRate)
	c.WideCreateBurst = max(c.WideCreateBurst, c.CreateBurst)
	setDefault(&c.MaxRooms, 10000)
	setDefault(&c.PingInterval, 20*time.Second)
	setDefault(&c.PongTimeout, 20*time.Second)
	setDefault(&c.WriteTimeout, 10*time.Second)
	setDefault(&c.IdleAfter, time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Server accepts WebSocket connections at /ws and runs one session per
// connection. It is an http.Handler.
type Server struct {
	cfg    Config
	reaper *reaper

	mu       sync.Mutex
	sessions map[*session]struct{}
	perIP    map[string]int
	closing  bool
	wg       sync.WaitGroup
	nextConn uint64

	// leave takes this node out of its cluster; nil on a single node.
	leave func()

	// poller holds the sessions waiting for data, without a goroutine;
	// nil where there is no epoll (every session then keeps one).
	// parkFailed logs, once, that a session could not park.
	poller     *poller
	parkFailed sync.Once

	// signals counts signal messages (the relay's hot path skips the
	// label lookup); localBus is set when the bus is the in-process one.
	signals  prometheus.Counter
	localBus bool

	// rooms counts the rooms; creates limits room creation per client
	// address, wideCreates per wider network, pairs the signals of each
	// member to each other member.
	rooms       roomCount
	creates     *keyedBuckets
	wideCreates *keyedBuckets
	pairs       *keyedBuckets
}

// New returns a Server. Call Start before serving.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		sessions:    make(map[*session]struct{}),
		perIP:       make(map[string]int),
		rooms:       roomCount{gauge: cfg.Metrics.Rooms},
		creates:     newKeyedBuckets(cfg.CreateRate, cfg.CreateBurst),
		wideCreates: newKeyedBuckets(cfg.WideCreateRate, cfg.WideCreateBurst),
		pairs:       newKeyedBuckets(cfg.PeerRate, cfg.PeerBurst),
	}
	s.signals = cfg.Metrics.Messages.WithLabelValues("signal")
	_, s.localBus = cfg.Bus.(*store.LocalBus)
	s.reaper = newReaper(cfg.Store, cfg.Now, cfg.Logger, s.discarded)
	if p, err := newPoller(s.resume); err == nil {
		s.poller = p
	} else {
		cfg.Logger.Debug("sessions keep a goroutine each", "err", err)
	}
	return s, nil
}

// Start takes over the rooms this node held before it last stopped: their
// connections from that run are gone, so each room without another node's
// connection starts (or keeps) its discard clock, and every discard time is
// scheduled. A room whose time passed while the node was down goes now.
// When the Store is a store.Cluster, the node then joins the others.
func (s *Server) Start(ctx context.Context) error {
	ids, err := s.cfg.Store.IDs(ctx)
	if err != nil {
		return fmt.Errorf("list rooms: %w", err)
	}
	now := s.cfg.Now()
	for _, id := range ids {
		r, err := s.cfg.Store.Update(ctx, id, func(r *room.Room) (*room.Room, error) {
			if r == nil {
				return nil, errUnchanged
			}
			r.DropNode(s.cfg.Node, now, s.cfg.DiscardDelay)
			return r, nil
		})
		if errors.Is(err, errUnchanged) {
			continue
		}
		if err != nil {
			return fmt.Errorf("recover room %s: %w", id, err)
		}
		s.reaper.track(r)
	}
	s.rooms.set(len(ids))
	// A store shared with other nodes keeps the rooms going when one of
	// them dies (cluster.go).
	if c, ok := s.cfg.Store.(store.Cluster); ok {
		leave, err := c.Join(ctx, s.cfg.Node, clusterNode{s})
		if err != nil {
			return fmt.Errorf("join the cluster: %w", err)
		}
		stopRecount := s.recountRooms(roomRecountInterval)
		s.leave = func() {
			stopRecount()
			leave()
		}
	}
	return nil
}

// Shutdown closes every session with "going away", records their
// disconnections, stops the discard timers and leaves the cluster, if any.
// It returns when all sessions have ended or ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for sess := range s.sessions {
		sess.close(closeGoingAway, "server shutting down")
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	if s.leave != nil {
		defer s.leave()
	}
	defer s.reaper.stop()
	select {
	case <-done:
		if s.poller != nil {
			return s.poller.close()
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("signal shutdown: %w", ctx.Err())
	}
}

// roomRecountInterval is how often a node of a cluster counts the rooms.
const roomRecountInterval = 30 * time.Second

// recountRooms sets the rooms count from the store every interval, until
// the returned stop is called (and returns once it has stopped). In a
// cluster the count cannot follow the rooms by itself: other nodes create
// them, and a room discarded by its timer is deleted by whichever node's
// timer comes first.
func (s *Server) recountRooms(interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			ids, err := s.cfg.Store.IDs(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.cfg.Logger.Debug("count the rooms", "err", err)
				}
				continue
			}
			s.rooms.set(len(ids))
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// ServeHTTP upgrades the request to a WebSocket and starts its session,
// which runs until the connection ends; Shutdown waits for it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip := s.clientIP(r)
	if !s.admit(ip) {
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
		return
	}
	conn, early, err := upgrade(w, r, s.cfg.OriginPatterns)
	if err != nil {
		s.release(ip)
		s.cfg.Logger.Debug("websocket upgrade refused", "ip", ip, "err", err)
		return
	}
	wire := newWireConn(conn, s.cfg.WriteTimeout, early)
	sess := s.newSession(wire, ip)
	if sess == nil {
		s.release(ip)
		// A close frame with no session behind it (RFC 6455, 5.5.1).
		wire.writeControl(opClose, closeBody(closeGoingAway, "server shutting down"))
		wire.Close()
		return
	}
	// The session runs on a goroutine of its own and this handler
	// returns, so that the HTTP server's goroutine, with its deep stack,
	// and its connection's buffers go.
	// Only the host is kept of the request: its context would keep the
	// HTTP connection's contexts alive with the session.
	go s.serve(sess, withHost(context.Background(), r.Host))
}

// serve runs a new session on its own goroutine (see step).
func (s *Server) serve(sess *session, ctx context.Context) {
	if s.step(sess, ctx) {
		s.ended(sess)
	}
}

// resume runs a session the poller found data for, on a new goroutine.
func (s *Server) resume(sess *session) {
	if s.step(sess, nil) {
		s.ended(sess)
	}
}

// step starts the session if ctx is given, then runs its read loop until
// the session parks in the poller or ends, and reports whether it ended.
// As net/http does for handlers, a panic is logged and ends only its
// connection.
func (s *Server) step(sess *session, ctx context.Context) (ended bool) {
	defer func() {
		if v := recover(); v != nil {
			s.cfg.Logger.Error("session panicked", "conn", sess.key.Key(), "ip", sess.ip,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			sess.unpoll()
			sess.wire.Close()
			ended = true
		}
	}()
	if ctx != nil {
		sess.start(ctx)
	}
	err := sess.readLoop()
	if err == errParked {
		return false
	}
	sess.finish(err)
	return true
}

// ended lets a session's connection slot go.
func (s *Server) ended(sess *session) {
	s.forget(sess)
	s.release(sess.ip)
}

func (s *Server) newSession(wire *wireConn, ip string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	s.nextConn++
	sess := newSession(s, wire, ip, s.nextConn, room.Conn{Node: s.cfg.Node, ID: fmt.Sprint(s.nextConn)})
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	return sess
}

func (s *Server) forget(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) admit(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		return false
	}
	s.perIP[ip]++
	return true
}

func (s *Server) release(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// clientIP is the key the per-address cap counts the request under (an
// IPv6 client by its /64).
func (s *Server) clientIP(r *http.Request) string {
	return clientaddr.FromRequest(r, s.cfg.TrustProxy)
}
