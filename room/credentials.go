package room

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
)

// Identity is a freshly minted member id and the secret that proves it. The
// secret is handed to the member once and only its hash is kept.
type Identity struct {
	ID     string
	Secret string
}

// Token is a freshly minted invitation: a public id, used to list and revoke
// it, and the secret token carried in the invitation link.
type Token struct {
	ID    string
	Token string
}

// Sizes of the random values, in bytes. Ids only need to be unique and hard
// to enumerate; secrets and tokens resist guessing.
const (
	idBytes     = 16
	secretBytes = 32
)

// NewID returns a random identifier of 128 bits, base64url-encoded.
func NewID(rand io.Reader) (string, error) { return randomString(rand, idBytes) }

// NewIdentity mints a member id and secret from rand.
func NewIdentity(rand io.Reader) (Identity, error) {
	id, err := randomString(rand, idBytes)
	if err != nil {
		return Identity{}, err
	}
	secret, err := randomString(rand, secretBytes)
	if err != nil {
		return Identity{}, err
	}
	return Identity{ID: id, Secret: secret}, nil
}

// NewToken mints an invitation id and its 256-bit token from rand.
func NewToken(rand io.Reader) (Token, error) {
	id, err := randomString(rand, idBytes)
	if err != nil {
		return Token{}, err
	}
	tok, err := randomString(rand, secretBytes)
	if err != nil {
		return Token{}, err
	}
	return Token{ID: id, Token: tok}, nil
}

func randomString(rand io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashSecret is the stored form of a secret or token. They carry 256 random
// bits, so a plain SHA-256 is as strong as a slow password hash would be.
func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// secretMatches compares a presented secret with a stored hash in constant
// time.
func secretMatches(hash []byte, secret string) bool {
	return subtle.ConstantTimeCompare(hash, hashSecret(secret)) == 1
}
