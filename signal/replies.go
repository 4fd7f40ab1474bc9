package signal

import (
	"cmp"
	"encoding/json"
	"slices"
	"time"

	"lepeerchat/room"
)

// header starts every server message: its type and, for replies, the id of
// the client message it answers.
type header struct {
	Re   *uint64 `json:"re,omitempty"`
	Type string  `json:"type"`
}

type errorBody struct {
	Code    room.Code `json:"code"`
	Message string    `json:"message"`
}

type errorReply struct {
	header
	Error errorBody `json:"error"`
}

// roomView is what a member sees of its room.
type roomView struct {
	ID      string       `json:"id"`
	Name    string       `json:"name"`
	Owner   string       `json:"owner"`
	Locked  bool         `json:"locked"`
	Members []memberView `json:"members"`
}

// memberView is a member as every message about it shows it: with its
// identity key once one is bound.
type memberView struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Online bool   `json:"online"`
	Key    string `json:"key,omitempty"`
}

func viewMember(m *room.Member, online bool) memberView {
	return memberView{ID: m.ID, Name: m.Name, Online: online, Key: m.Key}
}

// selfView tells a member who it is; Secret is set only when the identity
// was just minted, the one time it is ever sent.
type selfView struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Secret string `json:"secret,omitempty"`
	Key    string `json:"key,omitempty"`
}

type joinedReply struct {
	header
	Room roomView `json:"room"`
	Self selfView `json:"self"`
	// The ICE servers, when the server has an ICE provider (turn.go).
	*iceView
}

type invitationReply struct {
	header
	Room struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"room"`
}

type roomStatus struct {
	Room   string `json:"room"`
	Alive  bool   `json:"alive"`
	Name   string `json:"name,omitempty"`
	Self   string `json:"self,omitempty"`
	Online int    `json:"online,omitempty"`
	Locked bool   `json:"locked,omitempty"`
}

type statusReply struct {
	header
	Rooms []roomStatus `json:"rooms"`
}

type inviteView struct {
	ID        string    `json:"id"`
	Token     string    `json:"token,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	SingleUse bool      `json:"singleUse"`
}

type inviteReply struct {
	header
	Invite inviteView `json:"invite"`
}

type invitesReply struct {
	header
	Invites []inviteView `json:"invites"`
}

type welcomeMessage struct {
	header
	Version  int        `json:"version"`
	Features []string   `json:"features"`
	Limits   limitsView `json:"limits"`
}

type limitsView struct {
	MaxMessageBytes int     `json:"maxMessageBytes"`
	RatePerSecond   float64 `json:"ratePerSecond"`
	Burst           int     `json:"burst"`
	MaxNameLength   int     `json:"maxNameLength"`
	MaxMembers      int     `json:"maxMembers"`
}

// Events pushed to the members of a room.
type memberEvent struct {
	header
	Member memberView `json:"member"`
}

type memberLeftEvent struct {
	header
	Member string `json:"member"`
	Kicked bool   `json:"kicked,omitempty"`
	Owner  string `json:"owner"`
}

type lockedEvent struct {
	header
	Locked bool `json:"locked"`
}

func viewOf(r *room.Room) roomView {
	v := roomView{ID: r.ID, Name: r.Name, Owner: r.Owner, Locked: r.Locked}
	for _, m := range r.Members {
		v.Members = append(v.Members, viewMember(m, r.Online(m.ID)))
	}
	slices.SortFunc(v.Members, func(a, b memberView) int {
		return cmp.Or(r.Members[a.ID].Joined.Compare(r.Members[b.ID].Joined), cmp.Compare(a.ID, b.ID))
	})
	return v
}

func inviteOf(in *room.Invite, token string) inviteView {
	return inviteView{ID: in.ID, Token: token, Created: in.Created, Expires: in.Expires, SingleUse: in.SingleUse}
}

// encode marshals a server message. The types above cannot fail to
// marshal, so a failure is a programming error.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("signal: encode server message: " + err.Error())
	}
	return b
}
