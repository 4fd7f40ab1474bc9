package turn

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// coturnPassword computes the password exactly as coturn's
// use-auth-secret documents it, independently of the package:
// base64(HMAC-SHA1(key=secret, message=username)).
func coturnPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestMintFollowsTheCoturnScheme(t *testing.T) {
	const secret = "north-wind-and-sun"
	expires := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	user, pass := Mint(secret, "C4Dm3asppTm35DcxOt3o1A", expires.Add(999*time.Millisecond))
	if want := "1795622400:C4Dm3asppTm35DcxOt3o1A"; user != want {
		t.Errorf("username %q, want %q (unix seconds, a colon, the member)", user, want)
	}
	if want := coturnPassword(secret, user); pass != want {
		t.Errorf("password %q, want %q", pass, want)
	}
	// A fixed vector, so that a change of encoding (URL-safe base64, no
	// padding, hex) cannot go unnoticed: 20 bytes of HMAC-SHA1 give 28
	// characters with one '='.
	if len(pass) != 28 || !strings.HasSuffix(pass, "=") {
		t.Errorf("password %q is not standard padded base64 of 20 bytes", pass)
	}
	if got := Password("key", "The quick brown fox jumps over the lazy dog"); got != "3nybhbi3iqa8ino29wqQcBydtNk=" {
		t.Errorf("Password of the RFC 2104 example = %q", got)
	}
	// pion's own implementation of the same draft agrees.
	pu, pp, err := pionturn.GenerateLongTermTURNRESTCredentials(secret, "member", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if Password(secret, pu) != pp {
		t.Errorf("pion minted %s / %s; Password gives %s", pu, pp, Password(secret, pu))
	}
}

func TestVerify(t *testing.T) {
	const secret, member = "s3cret-shared-by-the-cluster", "memberA"
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	user, pass := Mint(secret, member, exp)
	otherUser, _ := Mint(secret, "memberB", exp)

	for _, tc := range []struct {
		name       string
		secret     string
		user, pass string
		now        time.Time
		want       error
	}{
		{"valid", secret, user, pass, now, nil},
		{"valid until its expiry second", secret, user, pass, exp.Add(999 * time.Millisecond), nil},
		{"expired one second later", secret, user, pass, exp.Add(time.Second), ErrExpired},
		{"expired long ago", secret, user, pass, exp.Add(48 * time.Hour), ErrExpired},
		{"wrong secret", "another-secret", user, pass, now, ErrBadPassword},
		{"password of another member", secret, otherUser, pass, now, ErrBadPassword},
		{"expiry pushed forward", secret, "1795626000:memberA", pass, now, ErrBadPassword},
		{"password made by hand right", secret, "1795626000:memberA", coturnPassword(secret, "1795626000:memberA"), now, nil},
		{"password unpadded", secret, user, strings.TrimRight(pass, "="), now, ErrBadPassword},
		{"empty password", secret, user, "", now, ErrBadPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Verify(tc.secret, tc.user, tc.pass, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %q, %v; want error %v", got, err, tc.want)
			}
			if err == nil && got != member {
				t.Errorf("member %q, want %q", got, member)
			}
		})
	}
}

func TestParseUsernameRefusesMalformed(t *testing.T) {
	for _, u := range []string{
		"", "memberA", "1795622400", "1795622400:", ":memberA", "-5:memberA", "+5:memberA",
		" 5:memberA", "5 :memberA", "0x10:memberA", "1.5:memberA", "99999999999999999999:memberA",
		"5:" + strings.Repeat("m", maxMemberLen+1),
	} {
		if m, exp, err := ParseUsername(u); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseUsername(%q) = %q, %v, %v; want ErrMalformed", u, m, exp, err)
		}
		// And Verify refuses it whatever the password.
		if _, err := Verify("secret", u, coturnPassword("secret", u), time.Unix(0, 0)); err == nil {
			t.Errorf("Verify accepted the malformed username %q", u)
		}
	}
	// The member is everything after the first colon, as coturn reads it.
	m, exp, err := ParseUsername("1795622400:a:b")
	if err != nil || m != "a:b" || exp.Unix() != 1795622400 {
		t.Errorf("ParseUsername(1795622400:a:b) = %q, %v, %v", m, exp, err)
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := t.TempDir()
	s1, err := LoadOrCreateSecret(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) < 40 {
		t.Errorf("secret %q is short", s1)
	}
	fi, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %v, want 0600", fi.Mode().Perm())
	}
	s2, err := LoadOrCreateSecret(dir, nil)
	if err != nil || s2 != s1 {
		t.Errorf("second load = %q, %v; want the same secret %q", s2, err, s1)
	}
	// Only the secret file is left: no temporary file.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("data folder holds %d entries, want 1", len(entries))
	}

	// Several processes starting at once agree on one secret.
	dir = t.TempDir()
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() {
			s, err := LoadOrCreateSecret(dir, nil)
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	for _, s := range got {
		if s != got[0] {
			t.Fatalf("concurrent starts made different secrets: %q", got)
		}
	}

	// A secret written by the operator is read as it is, without its
	// line ending.
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SecretFile), []byte("an operator's own secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := LoadOrCreateSecret(dir, nil); err != nil || s != "an operator's own secret" {
		t.Errorf("LoadOrCreateSecret = %q, %v", s, err)
	}
	// A too short one is an error, not silently replaced.
	if err := os.WriteFile(filepath.Join(dir, SecretFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecret(dir, nil); err == nil {
		t.Error("a 5-character secret was accepted")
	}
	// The randomness comes from the given reader.
	dir = t.TempDir()
	s, err := LoadOrCreateSecret(dir, bytes.NewReader(make([]byte, 32)))
	if err != nil || s != strings.Repeat("A", 43) {
		t.Errorf("secret from zero bytes = %q, %v", s, err)
	}
}
