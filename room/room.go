// Package room holds the rules of a lepeerchat room: who may create, join,
// rejoin, invite, lock, leave, and when an empty room is discarded.
//
// It does no I/O and keeps no clock: every operation takes the current time
// and, where it mints credentials, a source of randomness, and returns either
// a changed room or an *Error carrying a stable code. Callers persist the
// result; the store package makes each change atomic.
package room

import (
	"maps"
	"slices"
	"time"
)

// Limits that keep one room small enough to load, copy and check in full on
// every operation.
const (
	// MaxMembers bounds the members of a room, present or not.
	MaxMembers = 64
	// MaxInvites bounds the outstanding invitations of a room.
	MaxInvites = 64
	// MaxInviteTTL is the longest lifetime an invitation may be given.
	MaxInviteTTL = 30 * 24 * time.Hour
	// MinInviteTTL is the shortest lifetime an invitation may be given.
	MinInviteTTL = time.Minute
	// DefaultInviteTTL is the lifetime of an invitation when none is chosen.
	DefaultInviteTTL = 24 * time.Hour
	// ExpiredInviteGrace is how long an expired invitation is remembered,
	// so that its holder is told "expired" rather than "invalid".
	ExpiredInviteGrace = 7 * 24 * time.Hour
)

// Room is the whole persisted state of one room. Its fields are exported so
// that stores can encode it; only this package changes them.
type Room struct {
	ID      string             `json:"id"`
	Name    string             `json:"name"`
	Owner   string             `json:"owner"`
	Created time.Time          `json:"created"`
	Locked  bool               `json:"locked,omitempty"`
	Members map[string]*Member `json:"members"`
	Invites map[string]*Invite `json:"invites,omitempty"`
	// Conns maps each live connection, keyed by Conn.Key, to its member id.
	Conns map[string]string `json:"conns,omitempty"`
	// DiscardAt is when the room is to be discarded; zero while anyone is
	// connected.
	DiscardAt time.Time `json:"discardAt,omitzero"`
}

// Member is one identity in a room. The secret itself is never kept, only
// its hash. Key is the public identity key the member's browser announced
// (see BindKey), empty until one is.
type Member struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	SecretHash []byte    `json:"secretHash"`
	Joined     time.Time `json:"joined"`
	Key        string    `json:"key,omitempty"`
}

// Invite is an invitation to enter the room for the first time. The token is
// never kept, only its hash.
type Invite struct {
	ID        string    `json:"id"`
	TokenHash []byte    `json:"tokenHash"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	SingleUse bool      `json:"singleUse,omitempty"`
	Used      bool      `json:"used,omitempty"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// Conn names one live connection of a member: the node that holds it and an
// id unique on that node. A node name must not contain "/", which separates
// it from the id in Key.
type Conn struct {
	Node string
	ID   string
}

// Key is the key of the connection in Room.Conns.
func (c Conn) Key() string { return c.Node + "/" + c.ID }

// Clone returns a deep copy of r, sharing no memory with it (not even the
// hash bytes), so that an operation can change the copy while others still
// read the original.
func (r *Room) Clone() *Room {
	if r == nil {
		return nil
	}
	c := *r
	c.Members = make(map[string]*Member, len(r.Members))
	for id, m := range r.Members {
		mm := *m
		mm.SecretHash = slices.Clone(m.SecretHash)
		c.Members[id] = &mm
	}
	if r.Invites != nil {
		c.Invites = make(map[string]*Invite, len(r.Invites))
		for id, in := range r.Invites {
			ii := *in
			ii.TokenHash = slices.Clone(in.TokenHash)
			c.Invites[id] = &ii
		}
	}
	c.Conns = maps.Clone(r.Conns)
	return &c
}
