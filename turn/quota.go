package turn

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"lepeerchat/internal/clientaddr"
)

// The relays a server holds are bounded three ways: per member
// (MaxAllocationsPerMember), per client address across all the members it
// speaks for (MaxAllocationsPerAddress), and by the reserve: once no more
// than the reserved ports of the relay range are free, an address may
// still allocate only while it holds less than its fair share, the
// unreserved ports divided among the addresses holding relays (counting
// itself). A flood from one address thus stops short of the last ports,
// which stay for the others.
//
// Relays are counted against the range whatever their transport: browsers
// only ask for UDP relays, and counting TCP ones too errs on the side of
// keeping ports.

var (
	errQuota   = errors.New("turn: allocation quota reached")
	errRevoked = errors.New("turn: member revoked")
)

// reserveOf is the number of ports kept in reserve out of size at percent
// (negative: none), at least one when there is a reserve.
func reserveOf(size, percent int) int {
	if percent <= 0 {
		return 0
	}
	return max(1, size*percent/100)
}

// quota is the pion QuotaHandler, called for an Allocate request once its
// credentials are checked: it answers 486 (Allocation Quota Reached) to a
// member that the caps, the reserve or a revocation known here refuse,
// then to one revoked in the store (see revokedInStore), and notes the
// client address of the allocation for reserve, which counts the relay
// atomically against the same limits. The checks in memory come first, so
// that a flood of Allocates refused by them never reaches the store.
func (s *Server) quota(member, _ string, src net.Addr) bool {
	s.own.refreshIfStale(s.cfg.PublicIP, s.cfg.Now())
	client := clientaddr.Of(addrString(src))
	s.mu.Lock()
	err := s.admitPending(member, client)
	s.mu.Unlock()
	if err != nil || s.revokedInStore(member) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.admitPending(member, client); err != nil {
		return false
	}
	now := s.cfg.Now()
	p := s.pending[member]
	if p.client != client || now.Sub(p.since) >= pendingFor {
		p = pending{client: client} // none, or a stale one admitPending let go
	}
	p.n++
	p.since = now
	s.pending[member] = p
	return true
}

// pendingFor is how long the note of an allocation that passed quota
// waits for reserve. pion opens the socket right after quota, on the same
// goroutine, so a note older than this belongs to an allocation that
// failed in between; it is then dropped.
const pendingFor = 10 * time.Second

// pending is the note quota leaves for reserve: the client address of a
// member's allocations under way, how many, and since when.
type pending struct {
	client string
	n      int
	since  time.Time
}

// admitPending is admit, for an allocation about to be noted: it also
// forgets the notes and store answers gone stale (at most once every
// notRevokedFor), and refuses an allocation of a member while another of its
// allocations, from another client address, is under way. pion does not
// tell the relay generator the client address, so the note is per member;
// refusing the other address makes sure reserve charges the right one. A
// browser gathers its relay candidates from one address; the window is
// that of one Allocate's handling. s.mu is held.
func (s *Server) admitPending(member, client string) error {
	now := s.cfg.Now()
	if now.Sub(s.swept) >= notRevokedFor || now.Before(s.swept) {
		s.sweep(now)
	}
	if p, ok := s.pending[member]; ok && p.client != client && now.Sub(p.since) < pendingFor {
		s.cfg.Logger.Debug("turn: allocation refused while another of the member's is under way from another address", "member", member, "client", client)
		return errQuota
	}
	return s.admit(member, client)
}

// sweep forgets, at now, the notes of allocations that never reached
// reserve and the store answers about members holding no relay here that
// are too old to spare a look-up. s.mu is held.
func (s *Server) sweep(now time.Time) {
	for m, p := range s.pending {
		if now.Sub(p.since) >= pendingFor || now.Before(p.since) {
			delete(s.pending, m)
		}
	}
	for m, at := range s.checked {
		if _, holds := s.relays[m]; !holds && (now.Sub(at) >= notRevokedFor || now.Before(at)) {
			delete(s.checked, m)
		}
	}
	s.swept = now
}

// admit tells whether member may open one more relay for client, and logs
// why not; the refusals by address at debug level, since a flood from one
// address would otherwise flood the log. s.mu is held.
func (s *Server) admit(member, client string) error {
	if s.closed {
		return errClosed
	}
	if _, ok := s.revoked[member]; ok {
		return errRevoked
	}
	if n := len(s.relays[member]); n >= s.cfg.MaxAllocationsPerMember {
		s.cfg.Logger.Info("turn: allocation quota of a member reached", "member", member, "max", s.cfg.MaxAllocationsPerMember)
		return errQuota
	}
	held := s.clients[client]
	if held >= s.maxPerAddress {
		s.cfg.Logger.Debug("turn: allocation quota of an address reached", "client", client, "max", s.maxPerAddress)
		return errQuota
	}
	if free := s.size - s.open; free <= s.reserved {
		holders := len(s.clients)
		if held == 0 {
			holders++
		}
		if share := (s.size - s.reserved) / holders; held >= share {
			s.cfg.Logger.Debug("turn: relay ports run low; an address holding its share refused", "client", client, "holds", held, "share", share, "free", free)
			return errQuota
		}
	}
	return nil
}

// reserve counts a relay for member before its socket is opened, for the
// client address that quota noted, refusing it as admit does. It takes the
// note, even when it refuses.
func (s *Server) reserve(member string, tcp bool) (*relay, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	client, ok := s.takePending(member)
	if !ok {
		// Every allocation passes quota first; without its note the
		// relay cannot be counted for an address.
		return nil, errQuota
	}
	if err := s.admit(member, client); err != nil {
		return nil, err
	}
	r := &relay{s: s, member: member, client: client, port: relayPort{tcp: tcp}}
	set := s.relays[member]
	if set == nil {
		set = make(map[*relay]struct{})
		s.relays[member] = set
	}
	set[r] = struct{}{}
	s.clients[client]++
	s.open++
	return r, nil
}

// takePending takes one note of member's allocations under way, and
// returns its client address. s.mu is held.
func (s *Server) takePending(member string) (string, bool) {
	p, ok := s.pending[member]
	if !ok {
		return "", false
	}
	if p.n--; p.n <= 0 {
		delete(s.pending, member)
	} else {
		s.pending[member] = p
	}
	if s.cfg.Now().Sub(p.since) >= pendingFor {
		return "", false
	}
	return p.client, true
}

// dropPending takes one note of member's allocations under way, for an
// allocation that fails before reserve.
func (s *Server) dropPending(member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.takePending(member)
}

// opened records the socket of a reserved relay and its port. It reports
// false when the relay was released meanwhile (its member revoked): the
// caller then closes the socket.
func (s *Server) opened(r *relay, closer io.Closer, addr net.Addr) bool {
	var port int
	switch a := addr.(type) {
	case *net.UDPAddr:
		port = a.Port
	case *net.TCPAddr:
		port = a.Port
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.relays[r.member][r]; !ok {
		return false
	}
	r.closer = closer
	r.port.port = uint16(port)
	if n := s.useOf(r.port); n != nil {
		n.Add(1)
	}
	return true
}

// release uncounts a relay, reserved or open, and returns its socket if it
// has one.
func (s *Server) release(r *relay) io.Closer {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.relays[r.member]
	if _, ok := set[r]; !ok {
		return nil
	}
	delete(set, r)
	if len(set) == 0 {
		delete(s.relays, r.member)
	}
	if s.clients[r.client]--; s.clients[r.client] <= 0 {
		delete(s.clients, r.client)
	}
	s.open--
	if n := s.useOf(r.port); n != nil && r.closer != nil {
		n.Add(-1)
	}
	return r.closer
}

// useOf returns the counter of the relay sockets open on p, or nil for a
// port outside the relay range.
func (s *Server) useOf(p relayPort) *atomic.Int32 {
	i := int(p.port) - int(s.cfg.MinRelayPort)
	if i < 0 || i >= s.size {
		return nil
	}
	t := 0
	if p.tcp {
		t = 1
	}
	return &s.inUse[t][i]
}

// AddressAllocations returns how many relays the client address of addr
// (clientaddr.Of) holds now.
func (s *Server) AddressAllocations(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[clientaddr.Of(addr)]
}
