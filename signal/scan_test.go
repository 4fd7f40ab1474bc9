package signal

import "testing"

// TestScanSignalTakesThePlainFormOnly: the one-pass reader takes the forms
// clients send, quiet or not, and leaves everything else to decode.
func TestScanSignalTakesThePlainFormOnly(t *testing.T) {
	tests := []struct {
		frame string
		ok    bool
		id    any // uint64 when the message has one
		quiet bool
	}{
		{`{"id":1,"type":"signal","to":"m","data":{"a":1}}`, true, uint64(1), false},
		{`{"type":"signal","to":"m","data":{}}`, true, nil, false},
		{`{"id":2,"type":"signal","to":"m","data":{},"quiet":true}`, true, uint64(2), true},
		{`{"quiet":false,"type":"signal","to":"m","data":{}}`, true, nil, false},
		{`{"type":"signal","to":"m","data":{},"quiet":null}`, true, nil, false},
		{`{"type":"signal","to":"m","data":{},"quiet":1}`, false, nil, false},
		{`{"type":"signal","to":"m","data":{},"quiet":"true"}`, false, nil, false},
		{`{"type":"signal","to":"m","data":{},"quiet":true,"quiet":true}`, false, nil, false},
		{`{"type":"signal","to":"m","data":{},"qu\u0069et":true}`, false, nil, false},
		{`{"type":"signal","to":"m","data":{},"loud":true}`, false, nil, false},
		{`{"type":"ping"}`, false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.frame, func(t *testing.T) {
			m, ok := scanSignal([]byte(tt.frame))
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if id, want := m.idPtr(), tt.id; (id == nil) != (want == nil) || id != nil && *id != want.(uint64) {
				t.Errorf("id = %v, want %v", id, want)
			}
			if m.quiet != tt.quiet {
				t.Errorf("quiet = %v, want %v", m.quiet, tt.quiet)
			}
			if string(m.to) != "m" {
				t.Errorf("to = %q", m.to)
			}
		})
	}
}
