package turn

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pion/stun/v4"
)

// Revocations keeps the members whose credentials are refused, beyond this
// process: store.Store is one (boltstore across restarts, redisstore across
// the nodes of a cluster).
type Revocations interface {
	// Revoke records that member is revoked until until.
	Revoke(ctx context.Context, member string, until time.Time) error
	// Revoked reports whether member is revoked now.
	Revoked(ctx context.Context, member string) (bool, error)
}

// storeTimeout bounds a look-up in Revocations. It runs on pion's loop of
// the listener the request came on, which for UDP also carries every
// relayed datagram, so a slow store stalls that listener this long at most
// per look-up.
const storeTimeout = 250 * time.Millisecond

// notRevokedFor is how long the store's answer that a member is not
// revoked spares an allocation of that member the look-up: a burst of
// Allocates (a browser asks over each transport, and again on every ICE
// restart) costs one look-up. A member kicked on another node is thus
// refused new relays here at most this long after the kick.
const notRevokedFor = 5 * time.Second

// recheckEvery is how often, at most, the store is asked again about a
// member holding relays here, when it refreshes them.
const recheckEvery = 30 * time.Second

// How a revocation is checked, and what it costs. pion calls the auth
// handler for every authenticated request (Allocate, Refresh,
// CreatePermission, ChannelBind), before it checks the request's
// MESSAGE-INTEGRITY: anyone can make it run with any username. So the
// auth handler reads memory only: the members this process revoked, or
// learnt were revoked. The store is consulted in the quota handler, which
// pion calls after the integrity check, and only once the checks in memory
// (caps, reserve, revocations known here) let the allocation in: only a
// holder of valid credentials within its caps makes the server ask the
// store, at most once per member every notRevokedFor, and once for
// concurrent allocations of one member. So a member revoked on another
// node is refused its allocations on this one at most notRevokedFor after
// the revocation. The relays a member
// revoked elsewhere already holds here are closed when it next allocates,
// or when it next refreshes one of them (Refresh, CreatePermission,
// ChannelBind, which browsers send every few minutes): onAuth, called by
// pion once such a request's integrity is checked, asks the store about a
// member holding relays here at most every recheckEvery, so a member with
// many relays costs one look-up per interval, not one per request.

// Revoke ends member's relays on this server at once and refuses its
// credentials from now on, for a member that left its room for good or was
// removed from it. The revocation lasts as long as a credential minted
// before it could be used: CredentialTTL, then RefreshGrace. With
// Revocations set it is stored there too, so that a restart or another
// node refuses the member as well; the error is the store's.
func (s *Server) Revoke(ctx context.Context, member string) error {
	until := s.cfg.Now().Add(s.cfg.CredentialTTL + s.cfg.RefreshGrace)
	s.revokeHere(member, until)
	if s.cfg.Revocations == nil {
		return nil
	}
	if err := s.cfg.Revocations.Revoke(ctx, member, until); err != nil {
		return fmt.Errorf("turn: store the revocation of member %q: %w", member, err)
	}
	return nil
}

// revokeHere records member as revoked until until in memory, forgets the
// revocations that have ended, and closes member's relays.
func (s *Server) revokeHere(member string, until time.Time) {
	s.mu.Lock()
	now := s.cfg.Now()
	if until.After(s.revoked[member]) {
		s.revoked[member] = until
	}
	for m, u := range s.revoked {
		if !u.After(now) {
			delete(s.revoked, m)
		}
	}
	delete(s.pending, member)
	delete(s.checked, member)
	var rs []*relay
	for r := range s.relays[member] {
		rs = append(rs, r)
	}
	s.mu.Unlock()
	for _, r := range rs {
		r.Close()
	}
	if len(rs) > 0 {
		s.cfg.Logger.Info("turn: closed the relays of a departed member", "member", member, "relays", len(rs))
	}
}

// onAuth is pion's OnAuth event handler, called once a request's
// credentials and integrity are checked: see recheckEvery.
func (s *Server) onAuth(_, _ net.Addr, _, username, _, method string, verdict bool) {
	if !verdict || method == stun.MethodAllocate.String() || s.cfg.Revocations == nil {
		return
	}
	member, _, err := ParseUsername(username)
	if err != nil {
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	_, holds := s.relays[member]
	due := holds && !now.Before(s.checked[member].Add(recheckEvery))
	if due {
		s.checked[member] = now
	}
	s.mu.Unlock()
	if due {
		s.askStore(member)
	}
}

// isRevoked reports whether this process knows member to be revoked.
func (s *Server) isRevoked(member string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.revoked[member]
	return ok && until.After(s.cfg.Now())
}

// revokedInStore reports whether member is revoked, asking the store
// (askStore) when this process neither knows it revoked nor heard from
// the store within notRevokedFor that it is not.
func (s *Server) revokedInStore(member string) bool {
	if s.isRevoked(member) {
		return true
	}
	if s.cfg.Revocations == nil {
		return false
	}
	now := s.cfg.Now()
	s.mu.Lock()
	at, ok := s.checked[member]
	s.mu.Unlock()
	if ok && now.Sub(at) < notRevokedFor && !now.Before(at) {
		return false
	}
	return s.askStore(member)
}

// askStore asks the store whether member is revoked, one look-up for
// concurrent callers. A member the store says is revoked is remembered
// here and loses its relays here; one it says is not is noted in checked.
// When the store cannot answer, the allocation is refused: a kicked member
// must not get a relay because Redis is down (nor can anyone join a room
// then).
func (s *Server) askStore(member string) bool {
	revoked, _, _ := s.lookups.Do(member, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		revoked, err := s.cfg.Revocations.Revoked(ctx, member)
		if err != nil {
			s.cfg.Logger.Warn("turn: cannot check whether a member is revoked; allocation refused", "member", member, "err", err)
			return true, nil
		}
		if revoked {
			s.cfg.Logger.Debug("turn: credentials of a member revoked elsewhere refused", "member", member)
			s.revokeHere(member, s.cfg.Now().Add(s.cfg.CredentialTTL+s.cfg.RefreshGrace))
			return true, nil
		}
		s.mu.Lock()
		s.checked[member] = s.cfg.Now()
		s.mu.Unlock()
		return false, nil
	})
	return revoked.(bool)
}
