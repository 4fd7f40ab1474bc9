package room_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"lepeerchat/room"
)

// newKey returns a fresh identity key as a browser sends it: the raw
// export of an ECDSA P-256 public key, unpadded base64url.
func newKey(t testing.TB) string {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes())
}

// badKeys are identity keys that must be refused with invalid_key, each
// for another reason. key is a valid key to derive them from.
func badKeys(t testing.TB, key string) map[string]string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	offCurve := append([]byte(nil), raw...)
	offCurve[64] ^= 1 // y+1 (or y-1) is not the other coordinate of x
	compressed := append([]byte{2 | raw[64]&1}, raw[1:33]...)
	wrongTag := append([]byte{5}, raw[1:]...)
	enc := base64.RawURLEncoding.EncodeToString
	// The last character carries 2 unused bits: flipping one spells the
	// same bytes differently.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sloppy := key[:len(key)-1] + string(alphabet[strings.IndexByte(alphabet, key[len(key)-1])^1])
	return map[string]string{
		"not base64url":          strings.Repeat("!", room.KeyLen),
		"padded":                 base64.URLEncoding.EncodeToString(raw),
		"standard alphabet":      "+" + key[1:],
		"a line break inside":    key[:40] + "\n" + key[40:],
		"unused bits set":        sloppy,
		"too short":              enc(raw[:64]),
		"too long":               enc(append(raw, 0)),
		"compressed point":       enc(compressed),
		"wrong leading byte":     enc(wrongTag),
		"point not on the curve": enc(offCurve),
		"all zero coordinates":   enc(append([]byte{4}, make([]byte, 64)...)),
		"empty point":            enc([]byte{4}),
		"white space around":     " " + key,
	}
}

func TestCheckKeyAcceptsIdentityKeysAndNoKey(t *testing.T) {
	for range 20 {
		if err := room.CheckKey(newKey(t)); err != nil {
			t.Fatalf("a fresh P-256 key is refused: %v", err)
		}
	}
	if err := room.CheckKey(""); err != nil {
		t.Fatalf("no key is refused: %v", err)
	}
	if n := len(newKey(t)); n != room.KeyLen {
		t.Fatalf("a key is %d characters, KeyLen says %d", n, room.KeyLen)
	}
}

func TestCheckKeyRefusesEverythingElse(t *testing.T) {
	for name, key := range badKeys(t, newKey(t)) {
		t.Run(name, func(t *testing.T) {
			wantCode(t, room.CheckKey(key), room.CodeInvalidKey)
		})
	}
}

func TestBindKeyBindsRebindsAndKeeps(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	first, second := newKey(t), newKey(t)
	steps := []struct {
		name        string
		key         string
		wantChanged bool
		wantKey     string
	}{
		{"no key leaves the member without one", "", false, ""},
		{"a first key is bound", first, true, first},
		{"the same key again changes nothing", first, false, first},
		{"no key keeps the bound one", "", false, first},
		{"a different key replaces it", second, true, second},
	}
	for _, st := range steps {
		changed, err := r.BindKey(ownerID, st.key)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if changed != st.wantChanged || r.Members[ownerID].Key != st.wantKey {
			t.Fatalf("%s: changed %v, key %q; want %v, %q", st.name, changed, r.Members[ownerID].Key, st.wantChanged, st.wantKey)
		}
	}
}

func TestBindKeyRefusalChangesNothing(t *testing.T) {
	r := newRoom(t, newClock())
	bound := newKey(t)
	if _, err := r.BindKey(ownerID, bound); err != nil {
		t.Fatal(err)
	}
	for name, key := range badKeys(t, newKey(t)) {
		changed, err := r.BindKey(ownerID, key)
		wantCode(t, err, room.CodeInvalidKey)
		if changed {
			t.Fatalf("%s: reported a change", name)
		}
		if r.Members[ownerID].Key != bound {
			t.Fatalf("%s: the bound key changed to %q", name, r.Members[ownerID].Key)
		}
	}
	_, err := r.BindKey("m-nobody", bound)
	wantCode(t, err, room.CodeNoSuchMember)
}
