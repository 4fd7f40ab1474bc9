package room_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"regexp"
	"testing"
	"testing/iotest"

	"lepeerchat/room"
)

// countingBytes is a deterministic source of randomness: 0, 1, 2, …
func countingBytes(n int) io.Reader {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return bytes.NewReader(b)
}

var base64url = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// decodedLen returns the number of random bytes s carries, failing unless s
// is unpadded base64url.
func decodedLen(t *testing.T, what, s string) int {
	t.Helper()
	if !base64url.MatchString(s) {
		t.Fatalf("%s %q is not unpadded base64url", what, s)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("%s %q: %v", what, s, err)
	}
	return len(b)
}

func TestCredentialsAreTheReaderBytesBase64urlEncoded(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	src := make([]byte, 48)
	for i := range src {
		src[i] = byte(i)
	}

	id, err := room.NewIdentity(countingBytes(48))
	if err != nil {
		t.Fatal(err)
	}
	if want := (room.Identity{ID: enc(src[:16]), Secret: enc(src[16:48])}); id != want {
		t.Errorf("NewIdentity = %+v, want %+v", id, want)
	}

	tok, err := room.NewToken(countingBytes(48))
	if err != nil {
		t.Fatal(err)
	}
	if want := (room.Token{ID: enc(src[:16]), Token: enc(src[16:48])}); tok != want {
		t.Errorf("NewToken = %+v, want %+v", tok, want)
	}

	rid, err := room.NewID(countingBytes(16))
	if err != nil {
		t.Fatal(err)
	}
	if want := enc(src[:16]); rid != want {
		t.Errorf("NewID = %q, want %q", rid, want)
	}
}

func TestCredentialsCarryEnoughRandomBits(t *testing.T) {
	id, err := room.NewIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := room.NewToken(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rid, err := room.NewID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what     string
		value    string
		wantBits int
	}{
		{"member id", id.ID, 128},
		{"member secret", id.Secret, 256},
		{"invitation id", tok.ID, 128},
		{"invitation token", tok.Token, 256},
		{"id", rid, 128},
	} {
		if bits := 8 * decodedLen(t, tc.what, tc.value); bits < tc.wantBits {
			t.Errorf("%s carries %d bits, want at least %d", tc.what, bits, tc.wantBits)
		}
	}
}

func TestCredentialsAreDistinctOnSuccessiveCalls(t *testing.T) {
	seen := make(map[string]bool)
	fresh := func(what, s string) {
		t.Helper()
		if seen[s] {
			t.Fatalf("%s %q was issued twice", what, s)
		}
		seen[s] = true
	}
	for range 500 {
		id, err := room.NewIdentity(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		fresh("member id", id.ID)
		fresh("member secret", id.Secret)
		tok, err := room.NewToken(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		fresh("invitation id", tok.ID)
		fresh("invitation token", tok.Token)
		rid, err := room.NewID(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		fresh("id", rid)
	}
}

func TestCredentialsFailWhenRandomnessFails(t *testing.T) {
	boom := errors.New("entropy source broken")
	for _, tc := range []struct {
		name    string
		rand    func() io.Reader
		wantErr error
	}{
		{"failing reader", func() io.Reader { return iotest.ErrReader(boom) }, boom},
		{"reader short of the id", func() io.Reader { return countingBytes(10) }, io.ErrUnexpectedEOF},
		{"reader short of the secret", func() io.Reader { return countingBytes(20) }, io.ErrUnexpectedEOF},
		{"empty reader", func() io.Reader { return countingBytes(0) }, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := room.NewIdentity(tc.rand())
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("NewIdentity error = %v, want %v", err, tc.wantErr)
			}
			if id != (room.Identity{}) {
				t.Errorf("NewIdentity returned %+v with its error", id)
			}
			tok, err := room.NewToken(tc.rand())
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("NewToken error = %v, want %v", err, tc.wantErr)
			}
			if tok != (room.Token{}) {
				t.Errorf("NewToken returned %+v with its error", tok)
			}
		})
	}
	if _, err := room.NewID(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("NewID error = %v, want %v", err, boom)
	}
}
