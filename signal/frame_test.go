package signal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// clientFrame is a client frame: masked with key, as browsers send them.
func clientFrame(b0 byte, payload []byte, key uint32) []byte {
	b := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], key)
	b = append(b, k[:]...)
	for i, c := range payload {
		b = append(b, c^k[i%4])
	}
	return b
}

// readAll feeds stream to a frameReader in pieces of cut bytes (all at
// once when cut is 0) and describes each thing it makes, as the session
// sees them, until the stream ends or the reader refuses it.
func readAll(stream []byte, cut, max, hardMax int) (got []string, err error) {
	r := frameReader{max: max, hardMax: hardMax}
	for len(stream) > 0 {
		n := len(stream)
		if cut > 0 {
			n = min(n, cut)
		}
		// The piece is a copy, as a read into a fresh chunk would be.
		in := append([]byte(nil), stream[:n]...)
		stream = stream[n:]
		for len(in) > 0 {
			kind, payload, used, err := r.next(in)
			if err != nil {
				return got, err
			}
			in = in[used:]
			switch kind {
			case inMore:
			case inText:
				got = append(got, "text "+summary(payload))
			case inBinary:
				got = append(got, "binary "+summary(payload))
			case inTooLarge:
				got = append(got, "too large")
			case inPing:
				got = append(got, "ping "+string(payload))
			case inPong:
				got = append(got, "pong "+string(payload))
			case inClose:
				code, reason := closePayload(payload)
				got = append(got, fmt.Sprintf("close %d %s", code, reason))
			}
		}
	}
	r.release()
	return got, nil
}

// summary shows a short payload whole and a long one by size and ends.
func summary(p []byte) string {
	if len(p) <= 20 {
		return fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%d bytes %q…%q", len(p), p[:4], p[len(p)-4:])
}

func TestFrameReaderTakesBytesHoweverTheyAreCut(t *testing.T) {
	long := []byte(strings.Repeat("0123456789", 30))    // a 16-bit length
	huge := bytes.Repeat([]byte("ab"), 40000)           // a 64-bit length, over max
	big := []byte(strings.Repeat("x", 65536-3) + `end`) // exactly max
	var stream []byte
	add := func(b []byte) { stream = append(stream, b...) }
	add(clientFrame(finBit|opText, []byte(`{"type":"ping"}`), 0x01020304))
	add(clientFrame(finBit|opText, nil, 0xdeadbeef)) // an empty message
	// A message in three fragments, with a ping and a pong between them.
	add(clientFrame(opText, []byte("frag"), 0xa1b2c3d4))
	add(clientFrame(finBit|opPing, []byte("are you there"), 0x11111111))
	add(clientFrame(opContinuation, nil, 0x22222222))
	add(clientFrame(finBit|opPong, []byte("yes"), 0x33333333))
	add(clientFrame(finBit|opContinuation, []byte("mented"), 0x44444444))
	add(clientFrame(finBit|opBinary, []byte{1, 2, 3}, 0x55555555))
	add(clientFrame(finBit|opText, long, 0x66666666))
	add(clientFrame(finBit|opText, huge, 0x77777777))
	// Over max in its second fragment: skipped whole.
	add(clientFrame(opText, huge[:40000], 0x88888888))
	add(clientFrame(finBit|opContinuation, huge[:40000], 0x99999999))
	add(clientFrame(finBit|opText, big, 0xaaaaaaaa))
	add(clientFrame(finBit|opText, []byte("after"), 0xbbbbbbbb))
	add(clientFrame(finBit|opClose, append([]byte{0x03, 0xe8}, "bye"...), 0xcccccccc))
	want := []string{
		`text "{\"type\":\"ping\"}"`,
		`text ""`,
		`ping are you there`,
		`pong yes`,
		`text "fragmented"`,
		`binary "\x01\x02\x03"`,
		`text 300 bytes "0123"…"6789"`,
		`too large`,
		`too large`,
		`text 65536 bytes "xxxx"…"xend"`,
		`text "after"`,
		`close 1000 bye`,
	}
	for _, cut := range []int{0, 1, 2, 3, 5, 13, 64, 4096, 70001} {
		t.Run(fmt.Sprintf("pieces of %d", cut), func(t *testing.T) {
			got, err := readAll(stream, cut, 65536, 16*65536)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestFrameReaderRefusesBreachesOfTheProtocol(t *testing.T) {
	unmasked := []byte{finBit | opText, 2, 'h', 'i'}
	over63 := []byte{finBit | opText, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	for _, tt := range []struct {
		name   string
		stream []byte
		code   closeCode
	}{
		{"an unmasked frame", unmasked, closeProtocolError},
		{"reserved bits", clientFrame(finBit|0x40|opText, []byte("x"), 1), closeProtocolError},
		{"an unknown data opcode", clientFrame(finBit|0x3, []byte("x"), 1), closeProtocolError},
		{"an unknown control opcode", clientFrame(finBit|0xb, nil, 1), closeProtocolError},
		{"a fragmented ping", clientFrame(opPing, nil, 1), closeProtocolError},
		{"a ping over 125 bytes", clientFrame(finBit|opPing, make([]byte, 126), 1), closeProtocolError},
		{"a continuation with no message", clientFrame(finBit|opContinuation, []byte("x"), 1), closeProtocolError},
		{"a message inside a message", append(clientFrame(opText, []byte("a"), 1), clientFrame(finBit|opText, []byte("b"), 1)...), closeProtocolError},
		{"a close of one byte", clientFrame(finBit|opClose, []byte{3}, 1), closeProtocolError},
		{"a close code not for the wire", clientFrame(finBit|opClose, []byte{0x03, 0xed}, 1), closeProtocolError}, // 1005
		{"a close reason not UTF-8", clientFrame(finBit|opClose, []byte{0x03, 0xe8, 0xff}, 1), closeInvalidData},
		{"a length with the top bit set", over63, closeProtocolError},
		{"a message over the hard limit", clientFrame(finBit|opText, make([]byte, 1001), 1), closeMessageTooBig},
		{"fragments over the hard limit", append(clientFrame(opText, make([]byte, 600), 1), clientFrame(finBit|opContinuation, make([]byte, 401), 1)...), closeMessageTooBig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, cut := range []int{0, 1} {
				got, err := readAll(tt.stream, cut, 100, 1000)
				fe, ok := errors.AsType[*frameError](err)
				if !ok || fe.code != tt.code {
					t.Fatalf("pieces of %d: got %v then %v, want close %d", cut, got, err, tt.code)
				}
				if len(fe.reason) == 0 || len(fe.reason) > maxControlPayload-2 {
					t.Fatalf("reason %q does not fit a close frame", fe.reason)
				}
			}
		})
	}
}

func TestCloseBodyFitsAControlFrame(t *testing.T) {
	for _, tt := range []struct {
		code   closeCode
		reason string
		want   []byte
	}{
		{closeNormal, "", []byte{0x03, 0xe8}},
		{closeGoingAway, "bye", []byte{0x03, 0xe9, 'b', 'y', 'e'}},
		{closeNoStatus, "ignored", []byte{}},
	} {
		if got := closeBody(tt.code, tt.reason); !bytes.Equal(got, tt.want) || got == nil {
			t.Errorf("closeBody(%d, %q) = % x, want % x", tt.code, tt.reason, got, tt.want)
		}
	}
	if got := closeBody(closePolicyViolation, strings.Repeat("r", 200)); len(got) != maxControlPayload {
		t.Errorf("a long reason makes a body of %d bytes, want %d", len(got), maxControlPayload)
	}
}

// FuzzFrameReader checks that no input makes the frame reader panic, that
// how the bytes are cut changes nothing it makes, and that what it makes
// of a well-formed stream is what was framed.
func FuzzFrameReader(f *testing.F) {
	f.Add(clientFrame(finBit|opText, []byte(`{"type":"ping"}`), 0x01020304), 3)
	f.Add(append(clientFrame(opText, []byte("ab"), 7), clientFrame(finBit|opContinuation, []byte("cd"), 9)...), 1)
	f.Add(clientFrame(finBit|opClose, []byte{0x03, 0xe8, 'o', 'k'}, 5), 2)
	f.Add(clientFrame(finBit|opText, make([]byte, 300), 5), 7)
	f.Add([]byte{finBit | opText, 0x80 | 127, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4}, 4)
	f.Fuzz(func(t *testing.T, stream []byte, cut int) {
		cut = 1 + abs(cut)%64
		whole, errWhole := readAll(stream, 0, 200, 2000)
		cutUp, errCut := readAll(stream, cut, 200, 2000)
		if strings.Join(whole, "\n") != strings.Join(cutUp, "\n") || fmt.Sprint(errWhole) != fmt.Sprint(errCut) {
			t.Fatalf("whole: %q, %v; in pieces of %d: %q, %v", whole, errWhole, cut, cutUp, errCut)
		}
		// The same payload, framed as one text message, reads back as it.
		if len(stream) <= 200 {
			got, err := readAll(clientFrame(finBit|opText, stream, 0x5a5a5a5a), cut, 200, 2000)
			if err != nil || len(got) != 1 || got[0] != "text "+summary(stream) {
				t.Fatalf("%q framed read back as %q, %v", stream, got, err)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func TestCloseCodesAClientMaySend(t *testing.T) {
	for _, tt := range []struct {
		code closeCode
		ok   bool
	}{
		{999, false}, {1000, true}, {1003, true}, {1004, false}, {1005, false}, {1006, false},
		{1007, true}, {1011, true}, {1012, true}, {1014, true}, {1015, false}, {2999, false},
		{3000, true}, {4999, true}, {5000, false},
	} {
		if got := tt.code.valid(); got != tt.ok {
			t.Errorf("close code %d: valid = %v, want %v", tt.code, got, tt.ok)
		}
	}
}
