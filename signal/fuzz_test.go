package signal

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

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

// FuzzScanSignal checks the signal fast path against decode: whatever
// scanSignal accepts, decode accepts as a signal with the same id, the same
// recipient and the same data, byte for byte; and scanSignal's syntax check
// agrees with encoding/json's on the data it forwards.
func FuzzScanSignal(f *testing.F) {
	for _, seed := range []string{
		`{"id":13,"type":"signal","to":"m","data":{"sdp":"v=0"}}`,
		`{"type":"signal","to":"m","data":{}}`,
		` { "id" : null , "to" : "m" , "type" : "signal" , "data" : { "a" : [ 1 , -2.5e+3 , true , false , null , "\u00e9\n" ] } } `,
		`{"id":9007199254740992,"type":"signal","to":"m","data":{}}`,
		`{"id":9007199254740993,"type":"signal","to":"m","data":{}}`,
		`{"id":01,"type":"signal","to":"m","data":{}}`,
		`{"id":1.0,"type":"signal","to":"m","data":{}}`,
		`{"ID":1,"type":"signal","to":"m","data":{}}`,
		`{"id":1,"type":"sig\u006eal","to":"m","data":{}}`,
		`{"id":1,"type":"signal","to":"m","to":"n","data":{}}`,
		`{"id":1,"type":"signal","to":"m","data":{"a":1}} x`,
		`{"id":1,"type":"signal","to":"m","data":[]}`,
		`{"id":1,"type":"signal","to":"","data":{}}`,
		`{"id":1,"type":"signal","to":"m","data":{"a":"` + "\x01" + `"}}`,
		`{"id":1,"type":"signal","to":"m","data":{"a":{"b":{"c":[[[[]]]]}}}}`,
		"{\"type\":\"signal\",\"to\":\"m\",\"data\":{\"\xff\":1}}",
		`{"type":"signal","to":"m","data":{},"quiet":true}`,
		`{"id":2,"quiet":false,"type":"signal","to":"m","data":{}}`,
		`{"type":"signal","to":"m","data":{},"quiet":null}`,
		`{"type":"signal","to":"m","data":{},"quiet":1}`,
		`{"type":"signal","to":"m","data":{},"quiet":"true"}`,
		`{"type":"signal","to":"m","data":{},"quiet":true,"quiet":false}`,
		`{"type":"signal","to":"m","data":{},"quiet":tru}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, ok := scanSignal(data)
		if !ok {
			return
		}
		req, perr := decode(data)
		if perr != nil {
			t.Fatalf("scanSignal accepted %q, decode refused it: %v", data, perr)
		}
		if req.Type != "signal" || req.signal == nil {
			t.Fatalf("scanSignal accepted %q, decode read type %q", data, req.Type)
		}
		if (req.ID != nil) != m.hasID || m.hasID && *req.ID != m.id {
			t.Fatalf("%q: id %v/%v, decode %v", data, m.id, m.hasID, req.ID)
		}
		if req.signal.To != string(m.to) {
			t.Fatalf("%q: to %q, decode %q", data, m.to, req.signal.To)
		}
		if string(req.signal.Data) != string(m.data) {
			t.Fatalf("%q: data %q, decode %q", data, m.data, req.signal.Data)
		}
		if req.signal.Quiet != m.quiet {
			t.Fatalf("%q: quiet %v, decode %v", data, m.quiet, req.signal.Quiet)
		}
	})
}

// FuzzJSONScanner checks the syntax check of scanSignal against
// encoding/json on any value.
func FuzzJSONScanner(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `{"a":[1,2.5,-0,1e5,1E-5,true,false,null,"x\"\\\/\b\f\n\r\t\u12aB"]}`,
		`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":"\x"}`, `{"a":"\u12g4"}`,
		`{"a" 1}`, `{"a":1,}`, `[1,]`, `{"a":tru}`, "{\"a\":\"\t\"}", `{,}`, ` { } `, `{"a":[[[[[[]]]]]]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return
		}
		s := jsonScanner{b: data}
		s.ws()
		ok := s.value(0)
		s.ws()
		ok = ok && s.i == len(data)
		if ok && !json.Valid(data) {
			t.Fatalf("scanner accepted %q, encoding/json does not", data)
		}
		// Deeper than maxScanDepth the scanner gives up on purpose.
		if !ok && json.Valid(data) && depthOf(data) <= maxScanDepth {
			t.Fatalf("scanner refused %q, encoding/json accepts it", data)
		}
	})
}

// depthOf is the deepest nesting of brackets in valid JSON.
func depthOf(data []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range data {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == '{' || c == '['):
			depth++
			deepest = max(deepest, depth)
		case !inString && (c == '}' || c == ']'):
			depth--
		}
	}
	return deepest
}
