package room

import (
	"cmp"
	"crypto/ecdh"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"time"
)

// The operations below change the room they are called on. Call them on the
// private copy that store.Store.Update hands to its function, so that a
// refusal leaves the stored room untouched.

// Create returns a new room named name whose only member, owner, is its
// owner under the username user.
func Create(id, name, user string, owner Identity, now time.Time) (*Room, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return nil, err
	}
	user, err = NormalizeName(user)
	if err != nil {
		return nil, err
	}
	return &Room{
		ID:      id,
		Name:    name,
		Owner:   owner.ID,
		Created: now,
		Members: map[string]*Member{owner.ID: {
			ID: owner.ID, Name: user, SecretHash: hashSecret(owner.Secret), Joined: now,
		}},
	}, nil
}

// Join redeems an invitation token for a new member named user. A locked
// room refuses before looking at anything else, so that it reveals nothing.
func (r *Room) Join(token, user string, who Identity, now time.Time) (*Member, error) {
	if r.Locked {
		return nil, refuse(CodeRoomLocked, "the room is locked: new guests cannot enter")
	}
	in, err := r.admissible(token, now)
	if err != nil {
		return nil, err
	}
	user, err = NormalizeName(user)
	if err != nil {
		return nil, err
	}
	if r.nameTaken(user) {
		return nil, refuse(CodeNameTaken, "that username, or one that looks the same, is already taken in this room")
	}
	if in.SingleUse {
		in.Used = true
	}
	if _, clash := r.Members[who.ID]; clash {
		// 128 random bits never collide in practice; never overwrite.
		return nil, errors.New("room: minted member id already in use")
	}
	m := &Member{ID: who.ID, Name: user, SecretHash: hashSecret(who.Secret), Joined: now}
	r.Members[m.ID] = m
	return m, nil
}

// CheckInvite tells whether token would let a new guest in now, without
// using it. It refuses exactly as Join would before looking at the name.
func (r *Room) CheckInvite(token string, now time.Time) error {
	if r.Locked {
		return refuse(CodeRoomLocked, "the room is locked: new guests cannot enter")
	}
	_, err := r.admissible(token, now)
	return err
}

// admissible returns the invitation token redeems if it would let a new
// guest in now, whatever the guest's name: the invitation is usable and the
// room has a free place.
func (r *Room) admissible(token string, now time.Time) (*Invite, error) {
	in, err := r.redeemable(token, now)
	if err != nil {
		return nil, err
	}
	if len(r.Members) >= MaxMembers {
		return nil, refuse(CodeRoomFull, "the room has reached its member limit")
	}
	return in, nil
}

func (r *Room) redeemable(token string, now time.Time) (*Invite, error) {
	var found *Invite
	// Compare against every invitation, so that timing reveals nothing
	// about which one, if any, matched.
	for _, in := range r.Invites {
		if secretMatches(in.TokenHash, token) {
			found = in
		}
	}
	switch {
	case found == nil:
		return nil, refuse(CodeInviteInvalid, "this invitation is not valid for this room")
	case found.Revoked:
		return nil, refuse(CodeInviteRevoked, "this invitation has been revoked")
	case !now.Before(found.Expires):
		return nil, refuse(CodeInviteExpired, "this invitation has expired")
	case found.Used:
		return nil, refuse(CodeInviteUsed, "this invitation has already been used")
	}
	return found, nil
}

func (r *Room) nameTaken(user string) bool {
	key := NameKey(user)
	for _, m := range r.Members {
		if NameKey(m.Name) == key {
			return true
		}
	}
	return false
}

// Authenticate returns the member whose id and secret these are. It works
// whether or not the room is locked: members may always come back.
func (r *Room) Authenticate(memberID, secret string) (*Member, error) {
	m, ok := r.Members[memberID]
	// Compare even for an unknown id, so that timing does not reveal
	// which ids exist.
	hash := make([]byte, 32)
	if ok {
		hash = m.SecretHash
	}
	if !secretMatches(hash, secret) || !ok {
		return nil, refuse(CodeBadCredentials, "these credentials do not belong to a member of this room")
	}
	return m, nil
}

// Invite records a new invitation issued by the owner, valid for ttl (zero
// means DefaultInviteTTL). Only the invitations that can still let someone
// in count against MaxInvites: revoked, used and expired ones, kept to give
// their holders a precise refusal, are forgotten, oldest first, when their
// place is needed.
func (r *Room) Invite(by string, tok Token, ttl time.Duration, singleUse bool, now time.Time) (*Invite, error) {
	if err := r.mustOwn(by); err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = DefaultInviteTTL
	}
	if ttl < MinInviteTTL || ttl > MaxInviteTTL {
		return nil, refuse(CodeInvalidTTL, "an invitation must last between one minute and 30 days")
	}
	r.Prune(now)
	if len(r.ActiveInvites(now)) >= MaxInvites {
		return nil, refuse(CodeTooManyInvites, "too many outstanding invitations: revoke some first")
	}
	r.forgetDeadInvites(len(r.Invites)-MaxInvites+1, now)
	if r.Invites == nil {
		r.Invites = make(map[string]*Invite)
	}
	in := &Invite{
		ID: tok.ID, TokenHash: hashSecret(tok.Token),
		Created: now, Expires: now.Add(ttl), SingleUse: singleUse,
	}
	r.Invites[in.ID] = in
	return in, nil
}

// Revoke makes the owner's invitation id unusable. It is kept until it
// would have expired, or until its place is needed by a new invitation, so
// that its holder is told "revoked".
func (r *Room) Revoke(by, id string) error {
	if err := r.mustOwn(by); err != nil {
		return err
	}
	in, ok := r.Invites[id]
	if !ok {
		return refuse(CodeNoSuchInvite, "no such invitation")
	}
	in.Revoked = true
	return nil
}

// Prune forgets the invitations whose holders no longer need a precise
// refusal: those that expired more than ExpiredInviteGrace ago.
func (r *Room) Prune(now time.Time) {
	for id, in := range r.Invites {
		if !now.Before(in.Expires.Add(ExpiredInviteGrace)) {
			delete(r.Invites, id)
		}
	}
}

// forgetDeadInvites forgets up to n revoked, used or expired invitations,
// oldest first.
func (r *Room) forgetDeadInvites(n int, now time.Time) {
	if n <= 0 {
		return
	}
	var dead []*Invite
	for _, in := range r.Invites {
		if in.Revoked || in.Used || !now.Before(in.Expires) {
			dead = append(dead, in)
		}
	}
	slices.SortFunc(dead, byAge)
	for _, in := range dead[:min(n, len(dead))] {
		delete(r.Invites, in.ID)
	}
}

func byAge(a, b *Invite) int {
	return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
}

// ActiveInvites lists the invitations that can still let someone in,
// oldest first.
func (r *Room) ActiveInvites(now time.Time) []*Invite {
	var out []*Invite
	for _, in := range r.Invites {
		if !in.Revoked && !in.Used && now.Before(in.Expires) {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, byAge)
	return out
}

// SetLocked locks or unlocks the room; only the owner may.
func (r *Room) SetLocked(by string, locked bool) error {
	if err := r.mustOwn(by); err != nil {
		return err
	}
	r.Locked = locked
	return nil
}

func (r *Room) mustOwn(by string) error {
	if by != r.Owner {
		return refuse(CodeNotOwner, "only the room's owner may do this")
	}
	return nil
}

// Leave removes a member for good, freeing its name. When the owner leaves,
// ownership passes to the longest-standing remaining member. It reports
// whether the room is now empty of members and should be deleted.
func (r *Room) Leave(memberID string, now time.Time, discardDelay time.Duration) (empty bool, err error) {
	if _, ok := r.Members[memberID]; !ok {
		return false, refuse(CodeNoSuchMember, "no such member in this room")
	}
	delete(r.Members, memberID)
	for k, id := range r.Conns {
		if id == memberID {
			delete(r.Conns, k)
		}
	}
	if len(r.Members) == 0 {
		return true, nil
	}
	if r.Owner == memberID {
		r.Owner = r.eldest().ID
	}
	r.startClockIfEmpty(now, discardDelay)
	return false, nil
}

// Kick removes another member for good on the owner's order.
func (r *Room) Kick(by, target string, now time.Time, discardDelay time.Duration) error {
	if err := r.mustOwn(by); err != nil {
		return err
	}
	if target == by {
		return refuse(CodeCannotKickSelf, "the owner cannot kick themselves; leave instead")
	}
	_, err := r.Leave(target, now, discardDelay)
	return err
}

func (r *Room) eldest() *Member {
	var first *Member
	for _, m := range r.Members {
		if first == nil || m.Joined.Before(first.Joined) || (m.Joined.Equal(first.Joined) && m.ID < first.ID) {
			first = m
		}
	}
	return first
}

// Connect records c as the member's live connection and stops the discard
// clock. A member speaks through one connection at a time: the newest (a
// second tab, a reconnection before the old socket timed out) takes over
// and the member's other connections are dropped.
func (r *Room) Connect(memberID string, c Conn) error {
	if _, ok := r.Members[memberID]; !ok {
		return refuse(CodeNoSuchMember, "no such member in this room")
	}
	if r.Conns == nil {
		r.Conns = make(map[string]string)
	}
	for k, id := range r.Conns {
		if id == memberID {
			delete(r.Conns, k)
		}
	}
	r.Conns[c.Key()] = memberID
	r.DiscardAt = time.Time{}
	return nil
}

// Disconnect forgets a connection; when it was the room's last, the discard
// clock starts. Forgetting an unknown connection is harmless.
func (r *Room) Disconnect(c Conn, now time.Time, discardDelay time.Duration) {
	delete(r.Conns, c.Key())
	r.startClockIfEmpty(now, discardDelay)
}

// DropNode forgets every connection held by node, as after that node
// restarted or died.
func (r *Room) DropNode(node string, now time.Time, discardDelay time.Duration) {
	for k := range r.Conns {
		if strings.HasPrefix(k, node+"/") {
			delete(r.Conns, k)
		}
	}
	r.startClockIfEmpty(now, discardDelay)
}

func (r *Room) startClockIfEmpty(now time.Time, discardDelay time.Duration) {
	if len(r.Conns) == 0 && r.DiscardAt.IsZero() {
		r.DiscardAt = now.Add(discardDelay)
	}
}

// Discardable reports whether the room's discard time has come.
func (r *Room) Discardable(now time.Time) bool {
	return !r.DiscardAt.IsZero() && !now.Before(r.DiscardAt)
}

// Online reports whether the member has at least one live connection.
func (r *Room) Online(memberID string) bool {
	for _, id := range r.Conns {
		if id == memberID {
			return true
		}
	}
	return false
}

// KeyLen is the length of an identity key as sent: the unpadded base64url
// of an uncompressed SEC1 P-256 point (65 bytes).
const KeyLen = 87

// CheckKey refuses key unless it is an identity key: the unpadded
// base64url, in its one canonical spelling, of an uncompressed SEC1 point
// of the P-256 curve (ECDSA public keys as WebCrypto exports them raw). The
// empty key, none given, passes.
func CheckKey(key string) error {
	if key == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(key)
	// The decoder skips line breaks and ignores the unused low bits of
	// the last character: re-encoding refuses every spelling but one, so
	// that one key is always the same string.
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != key {
		return refuse(CodeInvalidKey, "the identity key is not unpadded base64url")
	}
	// NewPublicKey takes only the 65-byte uncompressed form and checks
	// that the point is on the curve.
	if _, err := ecdh.P256().NewPublicKey(b); err != nil {
		return refuse(CodeInvalidKey, "the identity key is not an uncompressed P-256 public key")
	}
	return nil
}

// BindKey binds an identity key to a member. On create and join it is the
// member's first key; on a rejoin the member has just proved itself with
// its secret, so a key different from the bound one replaces it (a browser
// that lost its key store makes a new key). An empty key keeps the bound
// one. It reports whether the bound key changed; an invalid key changes
// nothing (CheckKey).
func (r *Room) BindKey(memberID, key string) (changed bool, err error) {
	m, ok := r.Members[memberID]
	if !ok {
		return false, refuse(CodeNoSuchMember, "no such member in this room")
	}
	if err := CheckKey(key); err != nil {
		return false, err
	}
	if key == "" || key == m.Key {
		return false, nil
	}
	m.Key = key
	return true, nil
}
