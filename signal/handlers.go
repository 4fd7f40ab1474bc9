package signal

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"lepeerchat/internal/clientaddr"
	"lepeerchat/room"
	"lepeerchat/store"
)

// handle answers one client message.
func (s *session) handle(data []byte) {
	// Signals, most of the traffic, are read in one pass and forwarded
	// without being decoded; anything unusual goes the long way.
	if m, ok := scanSignal(data); ok {
		s.srv.signals.Inc()
		if err := s.relay(m.to, m.data); err != nil {
			s.fail(m.idPtr(), err)
			return
		}
		if !m.quiet {
			s.replyOK(m.id, m.hasID)
		}
		return
	}
	req, perr := decode(data)
	if perr != nil {
		s.refuse(perr.ID, perr.Code, perr.Msg)
		return
	}
	s.srv.cfg.Metrics.Messages.WithLabelValues(req.Type).Inc()
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	var err error
	switch req.Type {
	case "ping":
		s.ok(req.ID, "pong")
	case "create":
		err = s.create(ctx, req)
	case "join":
		err = s.join(ctx, req)
	case "rejoin":
		err = s.rejoin(ctx, req)
	case "invitation":
		err = s.invitation(ctx, req)
	case "status":
		err = s.status(ctx, req)
	case "signal":
		if err = s.relay([]byte(req.signal.To), req.signal.Data); err == nil && !req.signal.Quiet {
			s.ok(req.ID, "ok")
		}
	default:
		err = s.handleMember(ctx, req)
	}
	if err != nil {
		s.fail(req.ID, err)
	}
}

// fail turns an error from a handler into a negative reply: the rules'
// refusals keep their code; a store failure is "unavailable"; anything else
// is logged and reported as "internal".
func (s *session) fail(id *uint64, err error) {
	var rerr *room.Error
	var perr *protoError
	switch {
	case errors.As(err, &rerr):
		s.refuse(id, rerr.Code, rerr.Message)
	case errors.As(err, &perr):
		s.refuse(id, perr.Code, perr.Msg)
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.srv.cfg.Logger.Warn("store unavailable", "err", err)
		s.refuse(id, CodeUnavailable, "the server cannot reach its storage right now: try again shortly")
	default:
		s.srv.cfg.Logger.Error("request failed", "conn", s.key.Key(), "err", err)
		s.refuse(id, CodeInternal, "the server failed to handle this message")
	}
}

func (s *session) ok(id *uint64, typ string) {
	if typ == "ok" {
		if id == nil {
			s.replyOK(0, false)
		} else {
			s.replyOK(*id, true)
		}
		return
	}
	s.reply(encode(header{Re: id, Type: typ}))
}

// replyOK sends {"re":id,"type":"ok"}, or {"type":"ok"} without an id,
// built without encoding/json: the reply to every signal that is not
// quiet.
func (s *session) replyOK(id uint64, hasID bool) {
	var buf [40]byte
	b := buf[:0]
	if hasID {
		b = strconv.AppendUint(append(b, `{"re":`...), id, 10)
		b = append(b, `,"type":"ok"}`...)
	} else {
		b = append(b, `{"type":"ok"}`...)
	}
	s.reply(b)
}

var (
	errNotInRoom       = &protoError{Code: CodeNotInRoom, Msg: "join a room first"}
	errAlreadyInRoom   = &protoError{Code: CodeAlreadyInRoom, Msg: "this connection is already in a room: leave it first"}
	errNoRoom          = &room.Error{Code: room.CodeRoomNotFound, Message: "this room does not exist (any more)"}
	errPeerRateLimited = &protoError{Code: CodePeerRateLimited, Msg: "too many signals to this member: slow down"}
)

func (s *session) create(ctx context.Context, req *request) error {
	if s.attached() != nil {
		return errAlreadyInRoom
	}
	p := req.create
	if err := room.CheckKey(p.Key); err != nil {
		return err
	}
	srv := s.srv
	// The address's own bucket first, so that one address of a network
	// takes no more of the network's bucket than its own allows.
	now := srv.cfg.Now()
	if !srv.creates.allow([]byte(s.ip), now) || !srv.wideCreates.allow([]byte(clientaddr.Wide(s.ip)), now) {
		return &protoError{Code: CodeRateLimited, Msg: "too many rooms created from your address: wait a moment, then try again"}
	}
	if !srv.rooms.reserve(srv.cfg.MaxRooms) {
		return &protoError{Code: CodeTooManyRooms, Msg: "the server holds as many rooms as it may: try again later"}
	}
	err := s.createRoom(ctx, req.ID, p)
	if err != nil {
		srv.rooms.cancel()
		return err
	}
	srv.rooms.created()
	return nil
}

// createRoom makes a new room with this connection's member as its owner.
func (s *session) createRoom(ctx context.Context, id *uint64, p *createReq) error {
	roomID, err := room.NewID(s.srv.cfg.Rand)
	if err != nil {
		return err
	}
	who, err := room.NewIdentity(s.srv.cfg.Rand)
	if err != nil {
		return err
	}
	return s.attach(ctx, id, roomID, who.ID, who.Secret, func(r *room.Room) (*room.Room, error) {
		if r != nil {
			return nil, &room.Error{Code: room.CodeRoomExists, Message: "a room with this id already exists"}
		}
		r, err := room.Create(roomID, p.Room, p.Name, who, s.srv.cfg.Now())
		if err != nil {
			return nil, err
		}
		_, err = r.BindKey(who.ID, p.Key)
		return r, err
	})
}

func (s *session) join(ctx context.Context, req *request) error {
	if s.attached() != nil {
		return errAlreadyInRoom
	}
	who, err := room.NewIdentity(s.srv.cfg.Rand)
	if err != nil {
		return err
	}
	p := req.join
	if err := room.CheckKey(p.Key); err != nil {
		return err
	}
	return s.attach(ctx, req.ID, p.Room, who.ID, who.Secret, func(r *room.Room) (*room.Room, error) {
		if r == nil {
			return nil, errNoRoom
		}
		if _, err := r.Join(p.Invite, p.Name, who, s.srv.cfg.Now()); err != nil {
			return nil, err
		}
		_, err := r.BindKey(who.ID, p.Key)
		return r, err
	})
}

func (s *session) rejoin(ctx context.Context, req *request) error {
	if s.attached() != nil {
		return errAlreadyInRoom
	}
	p := req.rejoin
	if err := room.CheckKey(p.Key); err != nil {
		return err
	}
	return s.attach(ctx, req.ID, p.Room, p.Member, "", func(r *room.Room) (*room.Room, error) {
		if r == nil {
			return nil, errNoRoom
		}
		if _, err := r.Authenticate(p.Member, p.Secret); err != nil {
			return nil, err
		}
		_, err := r.BindKey(p.Member, p.Key)
		return r, err
	})
}

// attach makes this connection speak for a member of a room: it applies
// enter (create, join or rejoin) and records the connection in one atomic
// update, replies with the room, tells the member's other connections they
// are replaced, and tells the others it is here and, when enter bound it
// another key, its new key. secret is set when the identity is new, the
// only time it is sent.
func (s *session) attach(ctx context.Context, id *uint64, roomID, memberID, secret string, enter func(*room.Room) (*room.Room, error)) error {
	att := &attachment{room: roomID, member: memberID, signalHead: signalHead(memberID), pairHead: []byte(roomID + "/" + memberID + "/")}
	// Subscribe first, so that nothing sent to the member once it is
	// recorded as connected can be missed; hold it until the claim is
	// checked (gate.go).
	held := &gate{to: s.deliver}
	att.unsubscribe = s.srv.cfg.Bus.Subscribe(roomID, memberID, held.deliver)
	var wasMember, wasOnline bool
	var oldKey string
	r, err := s.srv.cfg.Store.Update(ctx, roomID, func(r *room.Room) (*room.Room, error) {
		wasMember = r != nil && r.Members[memberID] != nil
		wasOnline = wasMember && r.Online(memberID)
		oldKey = ""
		if wasMember {
			oldKey = r.Members[memberID].Key
		}
		r, err := enter(r)
		if err != nil {
			return nil, err
		}
		r.Prune(s.srv.cfg.Now())
		return r, r.Connect(memberID, s.key)
	})
	if err != nil {
		att.unsubscribe()
		return err
	}
	ice := s.ice(memberID)
	s.startICERefresh(att, ice)
	s.mu.Lock()
	s.att = att
	s.mu.Unlock()
	s.srv.cfg.Metrics.Connected.Inc()

	s.srv.reaper.track(r)

	self := r.Members[memberID]
	s.reply(encode(joinedReply{
		header:  header{Re: id, Type: "joined"},
		Room:    viewOf(r),
		Self:    selfView{ID: self.ID, Name: self.Name, Secret: secret, Key: self.Key},
		iceView: ice,
	}))
	held.release()
	if wasOnline {
		s.publish(ctx, roomID, memberID, busFrame(busReplaced, []byte(s.key.Key())))
	}
	ev := memberEvent{header: header{Type: "member.connected"}, Member: viewMember(self, true)}
	if !wasMember {
		ev.Type = "member.joined"
	}
	if !wasOnline {
		s.broadcast(ctx, r, memberID, encode(ev))
	}
	if wasMember && self.Key != oldKey {
		ev.Type = "member.key"
		s.broadcast(ctx, r, memberID, encode(ev))
	}
	return nil
}

// detach ends this connection's membership: it forgets the subscription,
// records the disconnection unless the room already dropped it (forever),
// and tells the others when the member has no connection left.
func (s *session) detach(forever bool) {
	att := s.dropAttachment()
	if att == nil || forever {
		return
	}
	// The connection may be closing because the server is: record the
	// disconnection even so.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), storeTimeout)
	defer cancel()
	cfg := &s.srv.cfg
	r, err := cfg.Store.Update(ctx, att.room, func(r *room.Room) (*room.Room, error) {
		if r == nil {
			return nil, errUnchanged
		}
		r.Disconnect(s.key, cfg.Now(), cfg.DiscardDelay)
		return r, nil
	})
	if err != nil {
		if !errors.Is(err, errUnchanged) {
			cfg.Logger.Warn("record disconnection", "room", att.room, "err", err)
		}
		return
	}
	s.srv.reaper.track(r)
	if _, ok := r.Members[att.member]; ok && !r.Online(att.member) {
		s.broadcast(ctx, r, att.member, encode(memberEvent{
			header: header{Type: "member.disconnected"},
			Member: viewMember(r.Members[att.member], false),
		}))
	}
}

// handleMember answers the messages that need this connection to speak for
// a member.
func (s *session) handleMember(ctx context.Context, req *request) error {
	att := s.attached()
	if att == nil {
		return errNotInRoom
	}
	cfg := &s.srv.cfg
	now := cfg.Now()
	switch req.Type {
	case "invite":
		tok, err := room.NewToken(cfg.Rand)
		if err != nil {
			return err
		}
		// Past the longest lifetime, any value is refused alike; capping
		// it first keeps the conversion from overflowing.
		ttl := time.Duration(min(req.invite.TTL, int64(room.MaxInviteTTL/time.Second)+1)) * time.Second
		var in *room.Invite
		_, err = s.update(ctx, att, func(r *room.Room) error {
			var err error
			in, err = r.Invite(att.member, tok, ttl, req.invite.SingleUse, now)
			return err
		})
		if err != nil {
			return err
		}
		s.reply(encode(inviteReply{header: header{Re: req.ID, Type: "invite"}, Invite: inviteOf(in, tok.Token)}))
	case "invites":
		r, err := cfg.Store.Get(ctx, att.room)
		if errors.Is(err, store.ErrNotFound) {
			return errNoRoom
		}
		if err != nil {
			return err
		}
		if r.Owner != att.member {
			return &room.Error{Code: room.CodeNotOwner, Message: "only the room's owner may do this"}
		}
		reply := invitesReply{header: header{Re: req.ID, Type: "invites"}, Invites: []inviteView{}}
		for _, in := range r.ActiveInvites(now) {
			reply.Invites = append(reply.Invites, inviteOf(in, ""))
		}
		s.reply(encode(reply))
	case "revoke":
		if _, err := s.update(ctx, att, func(r *room.Room) error { return r.Revoke(att.member, req.revoke.Invite) }); err != nil {
			return err
		}
		s.ok(req.ID, "ok")
	case "lock":
		locked := *req.lock.Locked
		r, err := s.update(ctx, att, func(r *room.Room) error { return r.SetLocked(att.member, locked) })
		if err != nil {
			return err
		}
		s.ok(req.ID, "ok")
		s.broadcast(ctx, r, att.member, encode(lockedEvent{header: header{Type: "room.locked"}, Locked: locked}))
	case "kick":
		target := req.kick.Member
		r, err := s.update(ctx, att, func(r *room.Room) error { return r.Kick(att.member, target, now, cfg.DiscardDelay) })
		if err != nil {
			return err
		}
		s.srv.revokeRelays(target)
		s.ok(req.ID, "ok")
		s.publish(ctx, att.room, target, busFrame(busKicked, nil))
		s.broadcast(ctx, r, att.member, encode(memberLeftEvent{header: header{Type: "member.left"}, Member: target, Kicked: true, Owner: r.Owner}))
	case "leave":
		return s.leave(ctx, req, att)
	}
	return nil
}

// leave detaches this connection from its room; with forever, the member
// leaves the room for good and its name is freed.
func (s *session) leave(ctx context.Context, req *request, att *attachment) error {
	if !req.leave.Forever {
		s.detach(false)
		s.ok(req.ID, "ok")
		return nil
	}
	cfg := &s.srv.cfg
	var gone bool
	r, err := cfg.Store.Update(ctx, att.room, func(r *room.Room) (*room.Room, error) {
		if r == nil {
			return nil, errNoRoom
		}
		empty, err := r.Leave(att.member, cfg.Now(), cfg.DiscardDelay)
		if gone = empty; empty {
			return nil, err
		}
		return r, err
	})
	if err != nil {
		return err
	}
	s.detach(true)
	s.srv.revokeRelays(att.member)
	s.ok(req.ID, "ok")
	if gone {
		s.srv.rooms.deleted()
		return nil
	}
	s.srv.reaper.track(r)
	// The member's other connections, if any, are now strangers.
	s.publish(ctx, att.room, att.member, busFrame(busKicked, nil))
	s.broadcast(ctx, r, att.member, encode(memberLeftEvent{header: header{Type: "member.left"}, Member: att.member, Owner: r.Owner}))
	return nil
}

// update applies change to the session's room atomically and returns the
// room after it.
func (s *session) update(ctx context.Context, att *attachment, change func(*room.Room) error) (*room.Room, error) {
	r, err := s.srv.cfg.Store.Update(ctx, att.room, func(r *room.Room) (*room.Room, error) {
		if r == nil {
			return nil, errNoRoom
		}
		if _, ok := r.Members[att.member]; !ok {
			return nil, &room.Error{Code: room.CodeBadCredentials, Message: "you are no longer a member of this room"}
		}
		if err := change(r); err != nil {
			return nil, err
		}
		return r, nil
	})
	if err == nil {
		s.srv.reaper.track(r)
	}
	return r, err
}

func (s *session) invitation(ctx context.Context, req *request) error {
	p := req.invitation
	r, err := s.srv.cfg.Store.Get(ctx, p.Room)
	if errors.Is(err, store.ErrNotFound) {
		return errNoRoom
	}
	if err != nil {
		return err
	}
	if err := r.CheckInvite(p.Invite, s.srv.cfg.Now()); err != nil {
		return err
	}
	reply := invitationReply{header: header{Re: req.ID, Type: "invitation"}}
	reply.Room.ID, reply.Room.Name = r.ID, r.Name
	s.reply(encode(reply))
	return nil
}

// status tells which of the rooms a browser remembers are still alive. A
// room is reported alive only to its members: wrong credentials and a
// discarded room look the same.
func (s *session) status(ctx context.Context, req *request) error {
	reply := statusReply{header: header{Re: req.ID, Type: "status"}, Rooms: make([]roomStatus, 0, len(req.status.Rooms))}
	for _, c := range req.status.Rooms {
		st := roomStatus{Room: c.Room}
		r, err := s.srv.cfg.Store.Get(ctx, c.Room)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			if m, err := r.Authenticate(c.Member, c.Secret); err == nil {
				st.Alive, st.Name, st.Self, st.Locked = true, r.Name, m.Name, r.Locked
				for _, m := range r.Members {
					if r.Online(m.ID) {
						st.Online++
					}
				}
			}
		}
		reply.Rooms = append(reply.Rooms, st)
	}
	s.reply(encode(reply))
	return nil
}

// relay forwards WebRTC signalling to another member of the same room. The
// bus is keyed by room, so a member can reach only connections attached to
// its own room. data is forwarded as it is, after a prefix made once per
// attachment. The caller replies when it succeeds, unless the signal is
// quiet. Each member's signals to each other member have a token bucket
// of their own, kept by the server across the sender's connections: a
// signal over it is refused to the sender, so that no member can make
// another's browser answer it faster than a call needs.
func (s *session) relay(to, data []byte) error {
	att := s.attached()
	if att == nil {
		return errNotInRoom
	}
	if string(to) == att.member {
		return &protoError{Code: CodeBadMessage, Msg: "cannot signal yourself"}
	}
	var keyBuf [2*maxIDLen + 32]byte
	if !s.srv.pairs.allow(append(append(keyBuf[:0], att.pairHead...), to...), s.srv.cfg.Now()) {
		return errPeerRateLimited
	}
	var frame []byte
	var pooled *[]byte
	if s.srv.localBus {
		// The in-process bus hands the frame to the recipient's
		// session, which copies it into its queue, before Send
		// returns: the buffer can be used again.
		pooled = framePool.Get().(*[]byte)
		frame = (*pooled)[:0]
	} else {
		frame = make([]byte, 0, len(att.signalHead)+len(data)+1)
	}
	frame = append(append(append(frame, att.signalHead...), data...), '}')
	delivered, err := s.srv.cfg.Bus.Send(s.ctx, att.room, string(to), frame)
	if pooled != nil && cap(frame) <= maxPooledFrame {
		*pooled = frame[:0]
		framePool.Put(pooled)
	}
	if err != nil {
		return err
	}
	if !delivered {
		return &protoError{Code: CodePeerUnavailable, Msg: "no member with this id is connected to this room"}
	}
	return nil
}

// framePool holds the buffers of forwarded signals on a single node.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledFrame = 64 << 10

// signalHead starts the bus frame of every signal from member: the tag
// and {"type":"signal","from":"<member>","data": (member ids are
// base64url, so need no escaping).
func signalHead(member string) []byte {
	return append(append([]byte{busClient}, `{"type":"signal","from":"`...), append([]byte(member), `","data":`...)...)
}

// broadcast sends msg to every connected member of r but one.
func (s *session) broadcast(ctx context.Context, r *room.Room, except string, msg []byte) {
	frame := busFrame(busClient, msg)
	sent := make(map[string]bool, len(r.Conns))
	for _, id := range r.Conns {
		if id != except && !sent[id] {
			sent[id] = true
			s.publish(ctx, r.ID, id, frame)
		}
	}
}

func (s *session) publish(ctx context.Context, roomID, memberID string, frame []byte) {
	if _, err := s.srv.cfg.Bus.Send(ctx, roomID, memberID, frame); err != nil {
		s.srv.cfg.Logger.Warn("bus send failed", "room", roomID, "err", err)
	}
}
