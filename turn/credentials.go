package turn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The credentials are those of coturn's "TURN REST API" (use-auth-secret,
// draft-uberti-behave-turn-rest): the username is "expiry:memberID", expiry
// in Unix seconds, and the password is base64(HMAC-SHA1(secret, username)).
// Anyone holding the shared secret can mint them and any server holding it
// can check them without state, so an external coturn configured with
// static-auth-secret accepts the same credentials as the built-in server.

// Errors from Verify and ParseUsername.
var (
	ErrMalformed   = errors.New("turn: malformed username: want expiry:member")
	ErrExpired     = errors.New("turn: credential expired")
	ErrBadPassword = errors.New("turn: wrong password for this username")
)

// SecretFile is the name of the file in the data folder that keeps the
// shared secret when none is given.
const SecretFile = "turn-secret"

// maxMemberLen bounds the member part of a username. Member ids are 22
// characters; coturn accepts any user name, so this only stops absurd ones.
const maxMemberLen = 128

// Password returns the password the scheme pairs with username:
// base64(HMAC-SHA1(secret, username)), standard base64 with padding.
func Password(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Mint returns credentials for member that are valid until expires
// (rounded down to the second).
func Mint(secret, member string, expires time.Time) (username, password string) {
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + member
	return username, Password(secret, username)
}

// ParseUsername splits a username into its member and its expiry. The
// member is everything after the first colon, as coturn reads it.
func ParseUsername(username string) (member string, expires time.Time, err error) {
	ts, member, ok := strings.Cut(username, ":")
	if !ok || ts == "" || member == "" || len(member) > maxMemberLen {
		return "", time.Time{}, ErrMalformed
	}
	// Only plain decimal digits: no sign, no spaces.
	for _, c := range ts {
		if c < '0' || c > '9' {
			return "", time.Time{}, ErrMalformed
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", time.Time{}, ErrMalformed
	}
	return member, time.Unix(sec, 0), nil
}

// Verify checks a username and password against secret at time now and
// returns the member they were minted for. Like coturn, a credential is
// valid up to and including its expiry second.
func Verify(secret, username, password string, now time.Time) (member string, err error) {
	member, expires, err := ParseUsername(username)
	if err != nil {
		return "", err
	}
	want := Password(secret, username)
	if subtle.ConstantTimeCompare([]byte(want), []byte(password)) != 1 {
		return "", ErrBadPassword
	}
	if Expired(expires, now) {
		return "", ErrExpired
	}
	return member, nil
}

// Expired tells whether a credential expiring at expires is no longer
// valid at now.
func Expired(expires, now time.Time) bool {
	return now.Unix() > expires.Unix()
}

// LoadOrCreateSecret returns the shared secret kept in dir/turn-secret,
// creating the file (mode 0600) with 256 random bits the first time.
func LoadOrCreateSecret(dir string, random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	path := filepath.Join(dir, SecretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		secret := strings.TrimSpace(string(b))
		if len(secret) < 16 {
			return "", fmt.Errorf("turn: %s holds a secret of %d characters; want at least 16 (delete it to have a new one made)", path, len(secret))
		}
		return secret, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("turn: read secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := io.ReadFull(random, raw); err != nil {
		return "", fmt.Errorf("turn: generate secret: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(raw)
	// Write a temporary file in full, then link it into place: a process
	// starting at the same time sees either no file or a whole one.
	f, err := os.CreateTemp(dir, SecretFile+".*")
	if err != nil {
		return "", fmt.Errorf("turn: create secret: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, werr := f.WriteString(secret + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return "", fmt.Errorf("turn: write secret: %w", err)
	}
	if err := os.Link(tmp, path); errors.Is(err, os.ErrExist) {
		return LoadOrCreateSecret(dir, random)
	} else if err != nil {
		return "", fmt.Errorf("turn: keep secret: %w", err)
	}
	return secret, nil
}
