package room

// Code is a stable, machine-readable reason for refusing an operation. The
// codes are part of the wire protocol (docs/protocol.md); never rename one.
type Code string

// The refusals of the room rules.
const (
	CodeInvalidName    Code = "invalid_name"
	CodeNameTaken      Code = "name_taken"
	CodeRoomNotFound   Code = "room_not_found"
	CodeRoomExists     Code = "room_exists"
	CodeRoomFull       Code = "room_full"
	CodeRoomLocked     Code = "room_locked"
	CodeInviteInvalid  Code = "invite_invalid"
	CodeInviteExpired  Code = "invite_expired"
	CodeInviteRevoked  Code = "invite_revoked"
	CodeInviteUsed     Code = "invite_used"
	CodeTooManyInvites Code = "too_many_invites"
	CodeInvalidTTL     Code = "invalid_ttl"
	CodeBadCredentials Code = "bad_credentials"
	CodeNotOwner       Code = "not_owner"
	CodeNoSuchMember   Code = "no_such_member"
	CodeNoSuchInvite   Code = "no_such_invite"
	CodeCannotKickSelf Code = "cannot_kick_self"
	CodeInvalidKey     Code = "invalid_key"
)

// Error is a refusal by the room rules: a stable code and a sentence a
// person can read.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func refuse(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }
