// Package signal owns the wire protocol of lepeerchat: a versioned JSON
// protocol over WebSocket (docs/protocol.md). It decodes and validates every
// client message in one place, applies the room rules through the store, and
// relays WebRTC signalling between members of the same room.
package signal

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"lepeerchat/room"
)

// Version is the protocol version this server speaks. It is announced in the
// welcome message and as the WebSocket subprotocol "lepeerchat.v1".
const (
	Version     = 1
	Subprotocol = "lepeerchat.v1"
)

// FeatureQuiet names an optional extension of the protocol, listed in
// the welcome message's "features": a signal with "quiet": true is
// answered only when it is refused. A client uses an extension only when
// the server lists it, so that pages and servers of different releases
// keep working together (during a rolling upgrade of a cluster, or with a
// page left open across a deploy).
const FeatureQuiet = "quiet"

// Protocol-level error codes, beside the room rules' codes (room.Code).
// They are stable: clients branch on them.
const (
	CodeBadJSON         room.Code = "bad_json"
	CodeBadMessage      room.Code = "bad_message"
	CodeUnknownType     room.Code = "unknown_type"
	CodeTooLarge        room.Code = "too_large"
	CodeBinaryFrame     room.Code = "binary_frame"
	CodeRateLimited     room.Code = "rate_limited"
	CodeNotInRoom       room.Code = "not_in_room"
	CodeAlreadyInRoom   room.Code = "already_in_room"
	CodePeerUnavailable room.Code = "peer_unavailable"
	// CodePeerRateLimited refuses a signal over the sender's rate towards
	// that one recipient; unlike rate_limited it never leads to a cut.
	CodePeerRateLimited room.Code = "peer_rate_limited"
	CodeTooManyRooms    room.Code = "too_many_rooms"
	CodeUnavailable     room.Code = "unavailable"
	CodeInternal        room.Code = "internal"
)

// Field limits, in bytes, checked before any rule runs.
const (
	maxIDLen     = 64
	maxSecretLen = 128
	// maxNameBytes leaves room for white space around the longest name
	// the rules accept; the rules then check the name itself.
	maxNameBytes = 2 * room.MaxNameBytes
	maxStatus    = 100
	maxKeyBytes  = 128
)

// request is one decoded and validated client message. Exactly one of the
// payload fields matching Type is set.
type request struct {
	ID   *uint64
	Type string

	create     *createReq
	join       *joinReq
	rejoin     *rejoinReq
	invitation *invitationReq
	status     *statusReq
	invite     *inviteReq
	revoke     *revokeReq
	lock       *lockReq
	kick       *kickReq
	leave      *leaveReq
	signal     *signalReq
}

// The Key of create, join and rejoin is the member's identity public key,
// which the rules bind to it (room.BindKey); empty when none is given.
type createReq struct {
	common
	Room string `json:"room"`
	Name string `json:"name"`
	Key  string `json:"key"`
}

type joinReq struct {
	common
	Room   string `json:"room"`
	Invite string `json:"invite"`
	Name   string `json:"name"`
	Key    string `json:"key"`
}

type rejoinReq struct {
	common
	credentials
	Key string `json:"key"`
}

// credentials prove membership of a room: rejoin and status carry them.
type credentials struct {
	Room   string `json:"room"`
	Member string `json:"member"`
	Secret string `json:"secret"`
}

type invitationReq struct {
	common
	Room   string `json:"room"`
	Invite string `json:"invite"`
}

type statusReq struct {
	common
	Rooms []credentials `json:"rooms"`
}

type inviteReq struct {
	common
	TTL       int64 `json:"ttl"`
	SingleUse bool  `json:"singleUse"`
}

type revokeReq struct {
	common
	Invite string `json:"invite"`
}

type lockReq struct {
	common
	Locked *bool `json:"locked"`
}

type kickReq struct {
	common
	Member string `json:"member"`
}

type leaveReq struct {
	common
	Forever bool `json:"forever"`
}

type signalReq struct {
	common
	To   string          `json:"to"`
	Data json.RawMessage `json:"data"`
	// Quiet asks for no reply when the signal is relayed: only a
	// failure is answered.
	Quiet bool `json:"quiet"`
}

// protoError is a refusal of a message before it reaches the rules. ID is
// the message's id when it could be read, so the reply can name it.
type protoError struct {
	ID   *uint64
	Code room.Code
	Msg  string
}

func (e *protoError) Error() string { return string(e.Code) + ": " + e.Msg }

// common holds the members every message has. Each payload type embeds
// it, so that a strict decoder accepts them beside the payload's own.
type common struct {
	ID   json.RawMessage `json:"id"`
	Type json.RawMessage `json:"type"`
}

// decode parses and validates one client message. Every failure is a
// *protoError whose code says what was wrong.
func decode(data []byte) (*request, *protoError) {
	if !utf8.Valid(data) {
		return nil, &protoError{Code: CodeBadJSON, Msg: "the message is not valid UTF-8"}
	}
	var env common
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, &protoError{Code: CodeBadJSON, Msg: "the message is not a JSON object: " + jsonProblem(err)}
	}
	req := &request{}
	if len(env.ID) > 0 && string(env.ID) != "null" {
		var id uint64
		if err := json.Unmarshal(env.ID, &id); err != nil || id > 1<<53 {
			return nil, &protoError{Code: CodeBadMessage, Msg: `"id" must be an integer from 0 to 2^53`}
		}
		req.ID = &id
	}
	if len(env.Type) == 0 {
		return nil, &protoError{ID: req.ID, Code: CodeBadMessage, Msg: `missing field "type"`}
	}
	if err := json.Unmarshal(env.Type, &req.Type); err != nil {
		return nil, &protoError{ID: req.ID, Code: CodeBadMessage, Msg: `"type" must be a string`}
	}
	var (
		payload any
		check   func() string
	)
	switch req.Type {
	case "create":
		p := &createReq{}
		req.create, payload = p, p
		check = func() string {
			return cmp.Or(firstMissing(field{"room", p.Room, maxNameBytes}, field{"name", p.Name, maxNameBytes}), keyTooLong(p.Key))
		}
	case "join":
		p := &joinReq{}
		req.join, payload = p, p
		check = func() string {
			return cmp.Or(firstMissing(field{"room", p.Room, maxIDLen}, field{"invite", p.Invite, maxSecretLen}, field{"name", p.Name, maxNameBytes}), keyTooLong(p.Key))
		}
	case "rejoin":
		p := &rejoinReq{}
		req.rejoin, payload = p, p
		check = func() string { return cmp.Or(p.check(), keyTooLong(p.Key)) }
	case "invitation":
		p := &invitationReq{}
		req.invitation, payload = p, p
		check = func() string {
			return firstMissing(field{"room", p.Room, maxIDLen}, field{"invite", p.Invite, maxSecretLen})
		}
	case "status":
		p := &statusReq{}
		req.status, payload = p, p
		check = func() string {
			if p.Rooms == nil {
				return `missing field "rooms"`
			}
			if len(p.Rooms) > maxStatus {
				return fmt.Sprintf(`"rooms" may list at most %d rooms`, maxStatus)
			}
			for i := range p.Rooms {
				if msg := p.Rooms[i].check(); msg != "" {
					return fmt.Sprintf(`"rooms"[%d]: %s`, i, msg)
				}
			}
			return ""
		}
	case "invite":
		p := &inviteReq{}
		req.invite, payload = p, p
		check = func() string {
			if p.TTL < 0 {
				return `"ttl" must not be negative`
			}
			return ""
		}
	case "invites", "leave", "ping":
		if req.Type == "leave" {
			req.leave = &leaveReq{}
			payload = req.leave
		} else {
			payload = &common{}
		}
	case "revoke":
		p := &revokeReq{}
		req.revoke, payload = p, p
		check = func() string { return firstMissing(field{"invite", p.Invite, maxIDLen}) }
	case "lock":
		p := &lockReq{}
		req.lock, payload = p, p
		check = func() string {
			if p.Locked == nil {
				return `missing field "locked"`
			}
			return ""
		}
	case "kick":
		p := &kickReq{}
		req.kick, payload = p, p
		check = func() string { return firstMissing(field{"member", p.Member, maxIDLen}) }
	case "signal":
		p := &signalReq{}
		req.signal, payload = p, p
		check = func() string {
			if msg := firstMissing(field{"to", p.To, maxIDLen}); msg != "" {
				return msg
			}
			if len(p.Data) == 0 || p.Data[0] != '{' {
				return `"data" must be a JSON object`
			}
			return ""
		}
	default:
		return nil, &protoError{ID: req.ID, Code: CodeUnknownType, Msg: fmt.Sprintf("unknown message type %q", truncate(req.Type, 40))}
	}
	if err := decodeStrict(data, payload); err != nil {
		return nil, &protoError{ID: req.ID, Code: CodeBadMessage, Msg: jsonProblem(err)}
	}
	if check != nil {
		if msg := check(); msg != "" {
			return nil, &protoError{ID: req.ID, Code: CodeBadMessage, Msg: msg}
		}
	}
	return req, nil
}

func (p *credentials) check() string {
	return firstMissing(field{"room", p.Room, maxIDLen}, field{"member", p.Member, maxIDLen}, field{"secret", p.Secret, maxSecretLen})
}

// decodeStrict decodes a whole message into the payload of its type,
// refusing fields the type does not have.
func decodeStrict(data []byte, payload any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(payload)
}

// keyTooLong says so when the optional key is over its byte limit; what
// the key must be the rules check (room.CheckKey).
func keyTooLong(key string) string {
	if len(key) > maxKeyBytes {
		return fmt.Sprintf(`field "key" is longer than %d bytes`, maxKeyBytes)
	}
	return ""
}

type field struct {
	name  string
	value string
	max   int
}

// firstMissing names the first field that is empty or longer than its
// limit, or returns "".
func firstMissing(fields ...field) string {
	for _, f := range fields {
		switch {
		case f.value == "":
			return fmt.Sprintf("missing field %q", f.name)
		case len(f.value) > f.max:
			return fmt.Sprintf("field %q is longer than %d bytes", f.name, f.max)
		}
	}
	return ""
}

// jsonProblem turns a decoding error into a sentence that names the field.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		name := typeErr.Field
		if name == "" {
			return "the message must be a JSON object"
		}
		return fmt.Sprintf("field %q must be %s, not %s", name, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("invalid JSON at byte %d", syntaxErr.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return truncate(err.Error(), 120)
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "ptr":
		return "a value"
	default:
		return "a number"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
