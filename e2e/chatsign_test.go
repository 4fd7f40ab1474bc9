package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"testing"
)

// testKeysJS defines testKeys(), the identity keys of a test driver's
// member: an ECDSA P-256 key pair made with WebCrypto and a ChatSigner
// (web/static/js/chat.js) over it. The room page learns the others' keys
// from the server (contract A, trust.js); a driver learns each member's
// key from that member itself, as a "test.key" data-channel message, the
// first one a member announces for itself staying (as the server's
// binding would), or from the test (learn). attach wires a Mesh and a
// Chat as the room page does, with the keys announced and learnt.
const testKeysJS = `
	const testKeys = async () => {
		const EC = { name: 'ECDSA', namedCurve: 'P-256' };
		const SIGN = { name: 'ECDSA', hash: 'SHA-256' };
		const pair = await crypto.subtle.generateKey(EC, false, ['sign', 'verify']);
		const b64 = (b) => btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
		const unb64 = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
		const known = new Map();
		const publicKey = b64(new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey)));
		const learn = (id, key) => {
			if (known.has(id) || typeof key !== 'string' || key.length !== 87) return false;
			known.set(id, crypto.subtle.importKey('raw', unb64(key), EC, false, ['verify']));
			return true;
		};
		return {
			publicKey,
			learn,
			attach: (mesh, chat) => {
				mesh.on('channelopen', (e) => {
					mesh.send(e.detail.id, { type: 'test.key', key: publicKey });
					chat.peerOpened(e.detail.id);
				});
				mesh.on('message', (e) => {
					if (e.detail.data.type === 'test.key') learn(e.detail.id, e.detail.data.key);
					else chat.handleMessage(e.detail.id, e.detail.data);
				});
			},
			signer: (self) => ({
				sign: async (bytes) => b64(new Uint8Array(await crypto.subtle.sign(SIGN, pair.privateKey, bytes))),
				verify: async (author, bytes, sig) => {
					const key = author === self ? pair.publicKey : await known.get(author);
					return !!key && crypto.subtle.verify(SIGN, key, unb64(sig), bytes);
				},
			}),
		};
	};
`

// chatKey is a Go member's identity key: it signs chat messages as the
// browser client does (docs/protocol.md, "Signature").
type chatKey struct {
	priv *ecdsa.PrivateKey
}

func newChatKey(t testing.TB) *chatKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("identity key: %v", err)
	}
	return &chatKey{priv: priv}
}

// public is the public key as contract A sends it: the uncompressed point,
// base64url without padding.
func (k *chatKey) public(t testing.TB) string {
	t.Helper()
	pub, err := k.priv.PublicKey.ECDH()
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(pub.Bytes())
}

// chatMessage is a chat message on the wire: a chat.msg without author, or
// a chat.history entry with one.
type chatMessage struct {
	Type    string `json:"type,omitempty"`
	ID      string `json:"id"`
	Author  string `json:"author,omitempty"`
	Lamport int64  `json:"lamport"`
	Text    string `json:"text"`
	Time    int64  `json:"time"`
	Sig     string `json:"sig"`
}

// chatSignedBytes are the bytes a chat message's signature covers: each
// field's length (4 bytes, big endian), then its UTF-8 bytes.
func chatSignedBytes(room, author, id string, lamport, time int64, text string) []byte {
	var out []byte
	for _, f := range []string{"lepeerchat.chat.v1", room, author, id, strconv.FormatInt(lamport, 10), strconv.FormatInt(time, 10), text} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// sign signs a message as written by author in room, and returns it with
// its signature (the raw r‖s form, base64url).
func (k *chatKey) sign(t testing.TB, room, author string, m chatMessage) chatMessage {
	t.Helper()
	digest := sha256.Sum256(chatSignedBytes(room, author, m.ID, m.Lamport, m.Time, m.Text))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	m.Sig = base64.RawURLEncoding.EncodeToString(sig)
	return m
}

// live is the chat.msg of a message signed by k as author.
func (k *chatKey) live(t testing.TB, room, author string, m chatMessage) string {
	t.Helper()
	m = k.sign(t, room, author, m)
	m.Type = "chat.msg"
	return mustJSON(t, m)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}
