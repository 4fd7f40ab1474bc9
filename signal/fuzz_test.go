package signal

import (
	"testing"

	"lepeerchat/room"
)

// FuzzDecode checks that no input makes the decoder panic, that every
// refusal carries a known code and a message, and that every accepted
// message has the payload its type needs.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"id":1,"type":"ping"}`,
		`{"id":2,"type":"create","room":"Book club","name":"Ann"}`,
		`{"id":3,"type":"join","room":"r","invite":"t","name":"Bob"}`,
		`{"id":4,"type":"rejoin","room":"r","member":"m","secret":"s"}`,
		`{"id":5,"type":"invitation","room":"r","invite":"t"}`,
		`{"id":6,"type":"status","rooms":[{"room":"r","member":"m","secret":"s"}]}`,
		`{"id":7,"type":"invite","ttl":3600,"singleUse":true}`,
		`{"id":8,"type":"invites"}`,
		`{"id":9,"type":"revoke","invite":"i"}`,
		`{"id":10,"type":"lock","locked":true}`,
		`{"id":11,"type":"kick","member":"m"}`,
		`{"id":12,"type":"leave","forever":true}`,
		`{"id":13,"type":"signal","to":"m","data":{"sdp":"v=0"}}`,
		`{"type":`, `[]`, `null`, `{"id":-1}`, `{"id":1e300,"type":"ping"}`, "{\"type\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	known := map[room.Code]bool{
		CodeBadJSON: true, CodeBadMessage: true, CodeUnknownType: true,
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, perr := decode(data)
		if perr != nil {
			if !known[perr.Code] || perr.Msg == "" {
				t.Fatalf("refusal %q %q is not a known decoder code with a message", perr.Code, perr.Msg)
			}
			return
		}
		if req.ID != nil && *req.ID > 1<<53 {
			t.Fatalf("id %d out of range", *req.ID)
		}
		payloads := map[string]bool{
			"create": req.create != nil, "join": req.join != nil, "rejoin": req.rejoin != nil,
			"invitation": req.invitation != nil, "status": req.status != nil, "invite": req.invite != nil,
			"revoke": req.revoke != nil, "lock": req.lock != nil && req.lock.Locked != nil,
			"kick": req.kick != nil, "leave": req.leave != nil,
			"signal": req.signal != nil && len(req.signal.Data) > 0 && req.signal.Data[0] == '{',
			"ping":   true, "invites": true,
		}
		has, ok := payloads[req.Type]
		if !ok || !has {
			t.Fatalf("accepted %q with type %q but without its payload", data, req.Type)
		}
	})
}
