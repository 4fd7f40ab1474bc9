package signal

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"lepeerchat/room"
	"lepeerchat/turn"
)

// ICEProvider hands out the STUN/TURN servers of a member's browser, with
// TURN credentials minted for that member (*turn.Provider is one).
type ICEProvider interface {
	// ICEServers returns the servers for member, whose browser reached
	// this server as host (the Host header of its WebSocket request), and
	// when their credentials expire (the zero time: never).
	ICEServers(member, host string) ([]turn.ICEServer, time.Time)
	// Revoke tells the relay that member left its room for good, was
	// kicked, or was in a room that was discarded: its relays close and
	// its credentials stop working, after a restart and on every node too.
	Revoke(ctx context.Context, member string) error
}

// iceView is the part of joined and ice.servers that carries the ICE
// servers.
type iceView struct {
	Servers []turn.ICEServer `json:"iceServers"`
	Expires *time.Time       `json:"iceExpires,omitempty"`
}

type iceServersMessage struct {
	header
	iceView
}

// Refreshes are pushed when a quarter of the credentials' lifetime is
// left, and never more often than iceMinRefresh.
const iceMinRefresh = time.Second

type hostKey struct{}

// withHost records the Host header of the WebSocket request in the
// session's context: the built-in TURN server's URLs use the host the
// browser already reached.
func withHost(ctx context.Context, host string) context.Context {
	return context.WithValue(ctx, hostKey{}, host)
}

func hostOf(ctx context.Context) string {
	h, _ := ctx.Value(hostKey{}).(string)
	return h
}

// ice mints the member's ICE servers, or returns nil when the server has
// no ICE provider.
func (s *session) ice(member string) *iceView {
	p := s.srv.cfg.ICE
	if p == nil {
		return nil
	}
	servers, expires := p.ICEServers(member, hostOf(s.ctx))
	v := &iceView{Servers: servers}
	if v.Servers == nil {
		v.Servers = []turn.ICEServer{}
	}
	if !expires.IsZero() {
		v.Expires = &expires
	}
	return v
}

// iceRefresher pushes fresh ICE servers to an attached member before its
// credentials expire, until stopped.
type iceRefresher struct {
	s   *session
	att *attachment

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// startICERefresh arranges the refreshes of the credentials in v, sent to
// att's member, and makes detaching stop them.
func (s *session) startICERefresh(att *attachment, v *iceView) {
	if v == nil || v.Expires == nil {
		return
	}
	r := &iceRefresher{s: s, att: att}
	unsubscribe := att.unsubscribe
	att.unsubscribe = func() {
		unsubscribe()
		r.stop()
	}
	r.schedule(*v.Expires)
}

func (r *iceRefresher) schedule(expires time.Time) {
	delay := max(time.Until(expires)*3/4, iceMinRefresh)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.stopped {
		r.timer = time.AfterFunc(delay, r.refresh)
	}
}

func (r *iceRefresher) refresh() {
	if r.s.attached() != r.att {
		return
	}
	v := r.s.ice(r.att.member)
	if v == nil {
		return
	}
	r.s.send(encode(iceServersMessage{header: header{Type: "ice.servers"}, iceView: *v}))
	if v.Expires != nil {
		r.schedule(*v.Expires)
	}
}

func (r *iceRefresher) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
	}
}

// revokeTimeout bounds the storing of the revocations of one departure.
const revokeTimeout = 5 * time.Second

// revokeRelays tells the ICE provider that the members are gone from their
// room. It does not take the session's context: the revocation must be
// stored even when the departing member's connection closes at once.
func (srv *Server) revokeRelays(members ...string) {
	if srv.cfg.ICE == nil || len(members) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	for _, member := range members {
		if err := srv.cfg.ICE.Revoke(ctx, member); err != nil {
			srv.cfg.Logger.Error("revoke the TURN credentials of a departed member", "member", member, "err", err)
		}
	}
}

// discarded is told of each room whose discard clock ran out: it counts it
// gone, and revokes its members' relays as a kick does, so that the
// credentials they were given for the room stop working before they expire.
func (srv *Server) discarded(r *room.Room) {
	srv.rooms.deleted()
	srv.revokeRelays(slices.Collect(maps.Keys(r.Members))...)
}
