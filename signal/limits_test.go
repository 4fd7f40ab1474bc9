package signal

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// dialFrom connects as a client at addr, as a proxy in front of the server
// reports it (the server trusts X-Forwarded-For).
func dialFrom(t *testing.T, ts *testServer, addr string) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := http.Header{"X-Forwarded-For": {addr}}
	conn, _, err := websocket.Dial(ctx, ts.wsURL(), &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTPHeader: h})
	if err != nil {
		cancel()
		t.Fatalf("dial from %s: %v", addr, err)
	}
	c := &client{t: t, conn: conn, ctx: ctx, cancel: cancel, in: make(chan msg, 1024), closed: make(chan error, 1)}
	go c.readLoop()
	t.Cleanup(c.close)
	if w := c.next(); w.str("type") != "welcome" {
		t.Fatalf("first message = %v, want welcome", w)
	}
	return c
}

// createOnce creates a room as c and leaves it again, so that c can create
// the next one; it returns the reply to create.
func createOnce(c *client, name string) msg {
	c.t.Helper()
	r := c.call("create", map[string]any{"room": name, "name": "Ann"})
	if r.str("type") == "joined" {
		c.mustCall("leave", nil)
	}
	return r
}

func TestRoomCreationIsRateLimitedPerAddress(t *testing.T) {
	clk := newClock()
	ts := startServer(t, "", func(c *Config) {
		c.Now, c.TrustProxy = clk.Now, true
		c.CreateRate, c.CreateBurst = rate.Every(time.Minute), 3
	})
	a := dialFrom(t, ts, "192.0.2.1")
	for i := range 3 {
		if r := createOnce(a, fmt.Sprint("room ", i)); r.str("type") != "joined" {
			t.Fatalf("create %d within the burst: %v", i, r)
		}
	}
	// Past the burst: refused with re, and never a strike however many.
	for i := range 2 * maxStrikes {
		r := a.call("create", map[string]any{"room": "one more", "name": "Ann"})
		if r.code() != "rate_limited" || r.obj("error").str("message") == "" {
			t.Fatalf("create %d past the burst: %v, want rate_limited with re", i, r)
		}
	}
	a.mustCall("ping", nil)
	// An invitation still lets the refused client into a room.
	owner := dialFrom(t, ts, "192.0.2.9")
	o := createRoom(owner, "r", "Olga")
	joinRoom(a, o.room, invite(owner, nil), "Ann")
	a.mustCall("leave", map[string]any{"forever": true})

	// Another address has a bucket of its own; the same IPv6 /64 does not.
	if r := createOnce(dialFrom(t, ts, "192.0.2.2"), "b"); r.str("type") != "joined" {
		t.Fatalf("another address: %v", r)
	}
	v6 := dialFrom(t, ts, "2001:db8:1:2::1")
	for range 3 {
		createOnce(v6, "v6")
	}
	if r := createOnce(dialFrom(t, ts, "2001:db8:1:2:ffff::7"), "v6"); r.code() != "rate_limited" {
		t.Fatalf("another address of the same /64: %v, want rate_limited", r)
	}
	// The bucket refills with time.
	clk.Advance(time.Minute)
	if r := createOnce(a, "later"); r.str("type") != "joined" {
		t.Fatalf("a minute later: %v", r)
	}
	if r := createOnce(a, "too soon"); r.code() != "rate_limited" {
		t.Fatalf("right after: %v", r)
	}
}

func TestTheSlash64sOfOneSlash48ShareACreationBucket(t *testing.T) {
	clk := newClock()
	ts := startServer(t, "", func(c *Config) { c.Now, c.TrustProxy = clk.Now, true })
	burst := ts.cfg.WideCreateBurst
	made := 0
	for i := range 100 {
		if r := createOnce(dialFrom(t, ts, fmt.Sprintf("2001:db8:1:%x::1", i)), "r"); r.str("type") == "joined" {
			made++
		} else if r.code() != "rate_limited" {
			t.Fatalf("create from /64 %d: %v, want joined or rate_limited", i, r)
		}
	}
	if made != burst {
		t.Errorf("100 /64s of one /48 created %d rooms, want the /48's burst %d", made, burst)
	}
	// Another /48, and an IPv4 /24, have buckets of their own.
	if r := createOnce(dialFrom(t, ts, "2001:db8:2::1"), "r"); r.str("type") != "joined" {
		t.Errorf("another /48: %v", r)
	}
	// The /24s of IPv4 share one too.
	made = 0
	for i := range burst + 5 {
		if r := createOnce(dialFrom(t, ts, fmt.Sprintf("198.51.100.%d", i+1)), "r"); r.str("type") == "joined" {
			made++
		}
	}
	if made != burst {
		t.Errorf("%d addresses of one /24 created %d rooms, want the /24's burst %d", burst+5, made, burst)
	}
}

func TestANetworksCreationBucketIsNeverSmallerThanAnAddresss(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.CreateRate, c.CreateBurst = 1000, 1000 })
	if ts.cfg.WideCreateRate != 1000 || ts.cfg.WideCreateBurst != 1000 {
		t.Errorf("network bucket %v, %d; want the address's 1000, 1000", ts.cfg.WideCreateRate, ts.cfg.WideCreateBurst)
	}
}

func TestRefusedCreatesTakeNoRoomAndInvalidKeysNoToken(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.CreateBurst, c.MaxRooms = 3, 1 })
	a := dial(t, ts)
	for range 5 {
		a.refused("invalid_key", "create", map[string]any{"room": "r", "name": "Ann", "key": "nope"})
	}
	a.refused("invalid_name", "create", map[string]any{"room": "\u200b", "name": "Ann"})
	// The invalid name took a token, not the room's place.
	if r := createOnce(a, "r"); r.str("type") != "joined" {
		t.Fatalf("create after refusals: %v", r)
	}
}

func TestRoomsAreCappedInAll(t *testing.T) {
	dir := t.TempDir()
	limits := func(c *Config) { c.MaxRooms, c.CreateBurst = 2, 100 }
	ts := startServer(t, dir, limits)
	a, b, c := dial(t, ts), dial(t, ts), dial(t, ts)
	first := createRoom(a, "one", "Ann")
	createRoom(b, "two", "Bob")
	c.refused("too_many_rooms", "create", map[string]any{"room": "three", "name": "Cy"})
	c.mustCall("ping", nil)

	// A room deleted by its last member's leaving frees its place.
	a.mustCall("leave", map[string]any{"forever": true})
	if ids, err := ts.store.IDs(t.Context()); err != nil || len(ids) != 1 {
		t.Fatalf("rooms: %v, %v", ids, err)
	}
	if _, err := ts.store.Get(t.Context(), first.room); err == nil {
		t.Fatal("the left room is still stored")
	}
	createRoom(c, "three", "Cy")
	a.refused("too_many_rooms", "create", map[string]any{"room": "four", "name": "Ann"})

	// After a restart the rooms in the store count.
	ts.stop()
	ts = startServer(t, dir, limits)
	dial(t, ts).refused("too_many_rooms", "create", map[string]any{"room": "five", "name": "Dee"})
}

func TestConcurrentCreatesNeverPassTheCap(t *testing.T) {
	const max, clients = 4, 12
	ts := startServer(t, "", func(c *Config) { c.MaxRooms, c.CreateBurst = max, 100 })
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = dial(t, ts)
	}
	frames := make([]string, clients)
	for i := range cs {
		frames[i] = fmt.Sprintf(`{"id":1,"type":"create","room":"r%d","name":"n"}`, i)
	}
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { c.sendRaw(frames[i]) })
	}
	wg.Wait()
	made := 0
	for _, c := range cs {
		switch r := c.next(); {
		case r.str("type") == "joined":
			made++
		case r.code() != "too_many_rooms":
			t.Fatalf("reply %v", r)
		}
	}
	ids, err := ts.store.IDs(t.Context())
	if made != max || err != nil || len(ids) != max {
		t.Fatalf("%d creates succeeded, %d rooms stored (%v); want %d", made, len(ids), err, max)
	}
}

// flood sends n quiet signals from c to member to, each with a fresh
// session id as a hostile member sends them, ids from first on; it
// returns how many were refused with peer_rate_limited, checking that
// each refusal names its signal.
func flood(c *client, to string, first, n int) (refused int) {
	c.t.Helper()
	var sb strings.Builder
	for i := first; i < first+n; i++ {
		sb.Reset()
		fmt.Fprintf(&sb, `{"id":%d,"type":"signal","to":%q,"data":{"sid":"s%d","hello":true},"quiet":true}`, i, to, i)
		c.sendRaw(sb.String())
	}
	// A ping after them: its pong comes after every refusal.
	c.mustCall("ping", nil)
	for _, m := range c.queue {
		if m.code() != "peer_rate_limited" || m["re"] == nil || m.obj("error").str("message") == "" {
			c.t.Fatalf("reply to a flood: %v, want peer_rate_limited with re", m)
		}
		refused++
	}
	c.queue = nil
	return refused
}

func TestAFloodedMemberIsNeverCutAndItsPeersStillHearIt(t *testing.T) {
	const burst = 20
	clk := newClock()
	// The connections keep the default rate (50/s, burst 200): the
	// flood below is within the attacker's, and answering every signal
	// of it twice would be over the victim's.
	ts := startServer(t, "", func(c *Config) {
		c.Now = clk.Now
		c.PeerRate, c.PeerBurst = 1, burst
	})
	mallory, bob, mal, victim := annAndBob(t, ts)
	carol := dial(t, ts)
	cy := joinRoom(carol, mal.room, invite(mallory, nil), "Carol")
	mallory.event("member.joined")
	bob.event("member.joined")

	// 150 signals in a burst: the first 20 reach Bob, every other one is
	// refused to Mallory, who is not cut for it either.
	if refused := flood(mallory, victim.id, 1, 150); refused != 150-burst {
		t.Fatalf("%d of 150 signals refused, want %d", refused, 150-burst)
	}
	// Bob answers each signal that reached him, as a browser would.
	for i := range burst {
		m := bob.next()
		if m.str("type") != "signal" || m.str("from") != mal.id {
			t.Fatalf("signal %d to Bob: %v", i, m)
		}
		bob.sendRaw(fmt.Sprintf(`{"type":"signal","to":%q,"data":{"sid":"b","answer":%d},"quiet":true}`, mal.id, i))
	}
	// Bob's own signals still reach Carol; his connection lives.
	bob.mustCall("signal", map[string]any{"to": cy.id, "data": map[string]any{"hello": true}})
	if m := carol.event("signal"); m.str("from") != victim.id {
		t.Fatalf("Carol got %v", m)
	}
	bob.mustCall("ping", nil)
	for range burst {
		if m := mallory.event("signal"); m.str("from") != victim.id {
			t.Fatalf("Mallory got %v", m)
		}
	}
	// The bucket is the pair's: Mallory still reaches Carol, and a new
	// connection does not refill the one towards Bob.
	mallory.mustCall("signal", map[string]any{"to": cy.id, "data": map[string]any{}})
	carol.event("signal")
	again := dial(t, ts)
	again.mustCall("rejoin", mal.creds())
	mallory.event("session.replaced")
	if refused := flood(again, victim.id, 1000, 5); refused != 5 {
		t.Fatalf("after reconnecting, %d of 5 signals refused, want 5", refused)
	}
	// Time refills it: one more second, one more signal.
	clk.Advance(time.Second)
	if refused := flood(again, victim.id, 2000, 2); refused != 1 {
		t.Fatalf("a second later, %d of 2 signals refused, want 1", refused)
	}
	if m := bob.event("signal"); m.str("from") != mal.id || m.obj("data").str("sid") != "s2000" {
		t.Fatalf("Bob got %v, want signal s2000", m)
	}
}

func TestACallsSignallingFitsTheDefaultPairRate(t *testing.T) {
	ts := startServer(t, "")
	a, b, _, guest := annAndBob(t, ts)
	// An offer, its labels and dozens of candidates, then two ICE
	// restarts with as many again: a hundred signals at once.
	if refused := flood(a, guest.id, 1, 100); refused != 0 {
		t.Fatalf("%d of a call's 100 signals refused", refused)
	}
	for range 100 {
		b.event("signal")
	}
}

func TestAnAnsweredSignalOverThePairRateIsRefusedWithItsID(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.PeerRate, c.PeerBurst = rate.Every(time.Hour), 1 })
	a, b, _, guest := annAndBob(t, ts)
	a.mustCall("signal", map[string]any{"to": guest.id, "data": map[string]any{}})
	b.event("signal")
	a.refused("peer_rate_limited", "signal", map[string]any{"to": guest.id, "data": map[string]any{}})
	// Over the pair's rate or not, a signal to nobody is still nobody's.
	a.refused("peer_unavailable", "signal", map[string]any{"to": "AAAAAAAAAAAAAAAAAAAAAA", "data": map[string]any{}})
	a.refused("bad_message", "signal", map[string]any{"to": strings.Repeat("x", maxIDLen+1), "data": map[string]any{}})
}

func TestKeyedBucketsForgetWhatRefilled(t *testing.T) {
	start := newClock().Now()
	k := newKeyedBuckets(10, 2) // a token every 100 ms
	// A hostile client makes up a new key every millisecond: only those
	// of the last 200 ms (two tokens to refill) may be held, plus what a
	// sweep leaves for the next one.
	for i := range 100000 {
		now := start.Add(time.Duration(i) * time.Millisecond)
		if !k.allow(fmt.Appendf(nil, "key %d", i), now) {
			t.Fatalf("a new key was refused")
		}
		if n := len(k.buckets); n > 2*max(minSweep, 200)+1 {
			t.Fatalf("%d buckets held after %d keys", n, i+1)
		}
	}
	// A key in use keeps its state through sweeps.
	now := start.Add(time.Hour)
	hot := []byte("hot")
	k.allow(hot, now)
	k.allow(hot, now)
	for i := range 10 * minSweep {
		k.allow(fmt.Appendf(nil, "other %d", i), now)
	}
	if k.allow(hot, now) {
		t.Fatal("a sweep refilled a bucket in use")
	}
}
