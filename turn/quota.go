package turn

import (
	"errors"
	"io"
	"net"
	"sync/atomic"

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
// revoked member (see revokedInStore) and to one that the caps or the
// reserve refuse, and notes the client address of the allocation for
// reserve, which counts the relay atomically against the same limits.
func (s *Server) quota(member, _ string, src net.Addr) bool {
	if s.revokedInStore(member) {
		return false
	}
	s.own.refreshIfStale(s.cfg.PublicIP, s.cfg.Now())
	client := clientaddr.Of(addrString(src))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.admit(member, client); err != nil {
		return false
	}
	s.pending[member] = client
	// The store was just asked about member (see recheckEvery).
	s.checked[member] = s.cfg.Now()
	return true
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
// client address that quota noted, refusing it as admit does.
func (s *Server) reserve(member string, tcp bool) (*relay, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	client, ok := s.pending[member]
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
		delete(s.pending, r.member)
		delete(s.checked, r.member)
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
