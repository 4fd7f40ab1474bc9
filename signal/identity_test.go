package signal

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
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

// offCurve returns key with its last coordinate byte changed: a point
// that is not on the curve.
func offCurve(t testing.TB, key string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	raw[64] ^= 1
	return base64.RawURLEncoding.EncodeToString(raw)
}

// keyRefusals are the values of "key" that create, join and rejoin refuse,
// each with the code it gets (room.CheckKey has the whole list).
func keyRefusals(t testing.TB) []struct{ name, json, code string } {
	key := newKey(t)
	raw, _ := base64.RawURLEncoding.DecodeString(key)
	return []struct{ name, json, code string }{
		{"not base64url", `"` + strings.Repeat("*", 87) + `"`, "invalid_key"},
		{"padded", `"` + base64.URLEncoding.EncodeToString(raw) + `"`, "invalid_key"},
		{"too short", `"` + key[:86] + `"`, "invalid_key"},
		{"compressed point", `"` + base64.RawURLEncoding.EncodeToString(append([]byte{2}, raw[1:33]...)) + `"`, "invalid_key"},
		{"point not on the curve", `"` + offCurve(t, key) + `"`, "invalid_key"},
		{"oversize", `"` + strings.Repeat("A", maxKeyBytes+1) + `"`, "bad_message"},
		{"a number", `42`, "bad_message"},
		{"an object", `{"kty":"EC"}`, "bad_message"},
		{"an array of bytes", `[4,1,2]`, "bad_message"},
	}
}

func TestKeysAreBoundOnCreateAndJoinAndShownInEveryMemberObject(t *testing.T) {
	ts := startServer(t, "")
	a, b := dial(t, ts), dial(t, ts)
	annKey, bobKey := newKey(t), newKey(t)

	created := a.mustCall("create", map[string]any{"room": "r", "name": "Ann", "key": annKey})
	if created.obj("self").str("key") != annKey || memberKey(created, 0) != annKey {
		t.Fatalf("create: joined %v does not carry Ann's key", created)
	}
	owner := member{room: created.obj("room").str("id"), id: created.obj("self").str("id"), secret: created.obj("self").str("secret")}
	joined := b.mustCall("join", map[string]any{"room": owner.room, "invite": invite(a, nil), "name": "Bob", "key": bobKey})
	if joined.obj("self").str("key") != bobKey || memberKey(joined, 0) != annKey || memberKey(joined, 1) != bobKey {
		t.Fatalf("join: joined %v does not carry both keys", joined)
	}
	guest := member{room: owner.room, id: joined.obj("self").str("id"), secret: joined.obj("self").str("secret")}
	if ev := a.event("member.joined"); ev.obj("member").str("key") != bobKey {
		t.Fatalf("member.joined %v without Bob's key", ev)
	}
	b.mustCall("leave", nil)
	if ev := a.event("member.disconnected"); ev.obj("member").str("key") != bobKey {
		t.Fatalf("member.disconnected %v without Bob's key", ev)
	}
	// A rejoin without a key keeps the bound one.
	back := b.mustCall("rejoin", guest.creds())
	if back.obj("self").str("key") != bobKey {
		t.Fatalf("rejoin without a key: self %v, want the bound key", back.obj("self"))
	}
	if ev := a.event("member.connected"); ev.obj("member").str("key") != bobKey {
		t.Fatalf("member.connected %v without Bob's key", ev)
	}
	// The key is stored with the room: it survives a restart.
	ts.stop()
	ts = startServer(t, ts.dir)
	c := dial(t, ts)
	if r := c.mustCall("rejoin", owner.creds()); memberKey(r, 0) != annKey || memberKey(r, 1) != bobKey {
		t.Fatalf("after a restart: %v", r.obj("room"))
	}
}

// memberKey is the key of the i-th member of a joined reply.
func memberKey(joined msg, i int) string {
	members, _ := joined.obj("room")["members"].([]any)
	if i >= len(members) {
		return ""
	}
	m, _ := members[i].(map[string]any)
	return msg(m).str("key")
}

func TestAMemberWithoutKeyHasNoKeyField(t *testing.T) {
	ts := startServer(t, "")
	a := dial(t, ts)
	r := a.mustCall("create", map[string]any{"room": "r", "name": "Ann"})
	if _, ok := r.obj("self")["key"]; ok {
		t.Fatalf("self of a member without key: %v", r.obj("self"))
	}
	if members, _ := r.obj("room")["members"].([]any); len(members) != 1 || msg(members[0].(map[string]any))["key"] != nil {
		t.Fatalf("members of a room without keys: %v", members)
	}
}

func TestInvalidKeysAreRefusedAndChangeNothing(t *testing.T) {
	ts := startServer(t, "")
	a, b := dial(t, ts), dial(t, ts)
	bound := newKey(t)
	owner := createRoom(a, "r", "Ann")
	single := invite(a, map[string]any{"singleUse": true})
	guest := joinRoom(b, owner.room, invite(a, nil), "Bob")
	a.event("member.joined")
	b.mustCall("leave", nil)
	a.event("member.disconnected")
	if r := b.mustCall("rejoin", withKey(guest.creds(), bound)); r.obj("self").str("key") != bound {
		t.Fatalf("rejoin with a key: %v", r)
	}
	a.event("member.connected")
	a.event("member.key")
	b.mustCall("leave", nil)
	a.event("member.disconnected")

	c := dial(t, ts)
	for _, tc := range keyRefusals(t) {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			for _, req := range []string{
				`{"id":1,"type":"create","room":"r2","name":"Cy","key":` + tc.json + `}`,
				`{"id":2,"type":"join","room":"` + owner.room + `","invite":"` + single + `","name":"Cy","key":` + tc.json + `}`,
				`{"id":3,"type":"rejoin","room":"` + guest.room + `","member":"` + guest.id + `","secret":"` + guest.secret + `","key":` + tc.json + `}`,
			} {
				c.sendRaw(req)
				if r := c.next(); r.code() != tc.code || r["re"] == nil || r.obj("error").str("message") == "" {
					t.Fatalf("%s: reply %v, want %s with re", req[:30], r, tc.code)
				}
			}
		})
	}
	c.t = t
	// Nothing changed: no room was made, the single-use invitation still
	// lets one in, and Bob's key is the one bound before.
	if ids, err := ts.store.IDs(t.Context()); err != nil || len(ids) != 1 {
		t.Fatalf("rooms after refused creates: %v, %v", ids, err)
	}
	joinRoom(c, owner.room, single, "Cy")
	if r := b.mustCall("rejoin", guest.creds()); r.obj("self").str("key") != bound {
		t.Fatalf("after refused rejoins the key is %q, want %q", r.obj("self").str("key"), bound)
	}
}

func TestAnEmptyOrNullKeyIsNoKey(t *testing.T) {
	ts := startServer(t, "")
	for _, v := range []string{`""`, `null`} {
		c := dial(t, ts)
		c.sendRaw(`{"id":1,"type":"create","room":"r","name":"Ann","key":` + v + `}`)
		r := c.next()
		if r.str("type") != "joined" {
			t.Fatalf("create with key %s: %v", v, r)
		}
		if _, ok := r.obj("self")["key"]; ok {
			t.Fatalf("create with key %s bound one: %v", v, r.obj("self"))
		}
	}
}

func TestStatusRefusesAKey(t *testing.T) {
	ts := startServer(t, "")
	c := dial(t, ts)
	c.refused("bad_message", "status", map[string]any{"rooms": []any{map[string]any{"room": "r", "member": "m", "secret": "s", "key": newKey(t)}}})
}

// withKey returns fields with "key" added.
func withKey(fields map[string]any, key string) map[string]any {
	fields["key"] = key
	return fields
}

// untilSignal returns the messages c receives up to the signal from from,
// which the server queues after every event its sender caused before it
// (docs/protocol.md §1.6): so they are all the events there were.
func untilSignal(c *client, from string) []msg {
	c.t.Helper()
	var got []msg
	for {
		m := c.next()
		if m.str("type") == "signal" && m.str("from") == from {
			return got
		}
		got = append(got, m)
	}
}

func types(ms []msg) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.str("type"))
	}
	return out
}

func TestRejoinWithAnotherKeyRebindsItAndTellsTheOthers(t *testing.T) {
	ts := startServer(t, "")
	a, b, owner, guest := annAndBob(t, ts)
	first, second, third := newKey(t), newKey(t), newKey(t)

	// Bob is online: his first key comes with member.key alone.
	b2 := dial(t, ts)
	b2.mustCall("rejoin", withKey(guest.creds(), first))
	b.event("session.replaced")
	b2.mustCall("signal", map[string]any{"to": owner.id, "data": map[string]any{}})
	got := untilSignal(a, guest.id)
	if len(got) != 1 || got[0].str("type") != "member.key" || got[0].obj("member").str("key") != first ||
		got[0].obj("member").str("id") != guest.id || got[0].obj("member")["online"] != true {
		t.Fatalf("Ann got %v, want one member.key with Bob's first key", got)
	}

	// The same key again, or none, changes nothing and tells nobody.
	for _, fields := range []map[string]any{withKey(guest.creds(), first), guest.creds()} {
		b3 := dial(t, ts)
		if r := b3.mustCall("rejoin", fields); r.obj("self").str("key") != first {
			t.Fatalf("rejoin %v: self %v", fields, r.obj("self"))
		}
		b3.mustCall("signal", map[string]any{"to": owner.id, "data": map[string]any{}})
		if got := untilSignal(a, guest.id); len(got) != 0 {
			t.Fatalf("rejoin %v: Ann got %v, want nothing", fields, types(got))
		}
	}

	// Offline, Bob comes back with another key: member.connected has
	// it, and member.key follows.
	b4 := dial(t, ts)
	b4.mustCall("rejoin", guest.creds())
	b4.mustCall("leave", nil)
	a.event("member.disconnected")
	b4.mustCall("rejoin", withKey(guest.creds(), second))
	b4.mustCall("signal", map[string]any{"to": owner.id, "data": map[string]any{}})
	got = untilSignal(a, guest.id)
	if len(got) != 2 || got[0].str("type") != "member.connected" || got[1].str("type") != "member.key" ||
		got[0].obj("member").str("key") != second || got[1].obj("member").str("key") != second {
		t.Fatalf("Ann got %v, want member.connected then member.key with the second key", got)
	}

	// Everyone who joins later sees the key bound now.
	c := dial(t, ts)
	joinRoom(c, owner.room, invite(a, nil), "Cy")
	b5 := dial(t, ts)
	if r := b5.mustCall("rejoin", withKey(guest.creds(), third)); memberKey(r, 1) != third {
		t.Fatalf("members after a rebinding: %v", r.obj("room"))
	}
	if ev := c.event("member.key"); ev.obj("member").str("key") != third {
		t.Fatalf("Cy got %v", ev)
	}
}

func TestClusterKeysCrossNodes(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, false)
	na, nb := cl.startNode("node-a"), cl.startNode("node-b")
	annKey, bobKey, newBobKey := newKey(t), newKey(t), newKey(t)

	// Ann on node A, Bob on node B: each key reaches the other node, in
	// the room kept as JSON in Redis and in the events on its bus.
	ca := dial(t, na.testServer)
	r := ca.mustCall("create", map[string]any{"room": "r", "name": "Ann", "key": annKey})
	owner := member{room: r.obj("room").str("id"), id: r.obj("self").str("id"), secret: r.obj("self").str("secret")}
	cb := dial(t, nb.testServer)
	joined := cb.mustCall("join", map[string]any{"room": owner.room, "invite": invite(ca, nil), "name": "Bob", "key": bobKey})
	if memberKey(joined, 0) != annKey {
		t.Fatalf("node B shows Ann as %v", joined.obj("room"))
	}
	guest := member{room: owner.room, id: joined.obj("self").str("id"), secret: joined.obj("self").str("secret")}
	if ev := ca.event("member.joined"); ev.obj("member").str("key") != bobKey {
		t.Fatalf("member.joined on node A: %v", ev)
	}
	// Bob's new connection, on node B again, replaces his live one and
	// binds another key: node A's Ann hears of it.
	cb2 := dial(t, nb.testServer)
	cb2.mustCall("rejoin", withKey(guest.creds(), newBobKey))
	cb.event("session.replaced")
	cb2.mustCall("signal", map[string]any{"to": owner.id, "data": map[string]any{}})
	got := untilSignal(ca, guest.id)
	if len(got) != 1 || got[0].str("type") != "member.key" || got[0].obj("member").str("key") != newBobKey {
		t.Fatalf("Ann on node A got %v, want member.key with Bob's new key", got)
	}
	// And a member rejoining on node A sees it too.
	ca2 := dial(t, na.testServer)
	if r := ca2.mustCall("rejoin", owner.creds()); memberKey(r, 1) != newBobKey || r.obj("self").str("key") != annKey {
		t.Fatalf("node A's view after the rebinding: %v", r)
	}
}

func TestOnlyTheSecretRebindsAKey(t *testing.T) {
	ts := startServer(t, "")
	a, b, owner, guest := annAndBob(t, ts)
	bobKey := newKey(t)
	b2 := dial(t, ts)
	b2.mustCall("rejoin", withKey(guest.creds(), bobKey))
	b.event("session.replaced")
	a.event("member.key")

	// Mallory knows Bob's id, not his secret: her key binds to nobody,
	// whether she guesses or claims to be Bob in another room.
	mallory := dial(t, ts)
	forged := withKey(guest.creds(), newKey(t))
	forged["secret"] = strings.Repeat("x", 43)
	mallory.refused("bad_credentials", "rejoin", forged)
	elsewhere := createRoom(dial(t, ts), "other", "Eve")
	forged = withKey(guest.creds(), newKey(t))
	forged["room"] = elsewhere.room
	mallory.refused("bad_credentials", "rejoin", forged)

	b2.mustCall("signal", map[string]any{"to": owner.id, "data": map[string]any{}})
	if got := untilSignal(a, guest.id); len(got) != 0 {
		t.Fatalf("Ann got %v after refused rejoins, want nothing", types(got))
	}
	if r := dial(t, ts).mustCall("rejoin", owner.creds()); memberKey(r, 1) != bobKey {
		t.Fatalf("Bob's key after forged rejoins: %v", r.obj("room"))
	}
}

func TestAKeyOnAnAttachedConnectionIsRefusedForTheState(t *testing.T) {
	ts := startServer(t, "")
	a, _, owner, _ := annAndBob(t, ts)
	// Out of order, the connection's state is refused before the key is
	// looked at: a valid or invalid key changes nothing.
	for _, key := range []string{newKey(t), "not a key"} {
		a.refused("already_in_room", "create", map[string]any{"room": "r", "name": "n", "key": key})
		a.refused("already_in_room", "rejoin", withKey(owner.creds(), key))
	}
	if r := a.mustCall("invites", nil); r.str("type") != "invites" {
		t.Fatalf("invites: %v", r)
	}
	if r := dial(t, ts).mustCall("rejoin", owner.creds()); r.obj("self")["key"] != nil {
		t.Fatalf("a refused key was bound: %v", r.obj("self"))
	}
}
