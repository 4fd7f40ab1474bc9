package signal

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"lepeerchat/turn"
	"lepeerchat/turn/turntest"
)

// startRelayedServer starts a signal server whose members get the ICE
// servers of a built-in TURN server on 127.0.0.1, applying opts to its
// configuration after that.
func startRelayedServer(t *testing.T, opts ...func(*Config)) (*testServer, *turn.Server) {
	t.Helper()
	relay, err := turn.Start(turn.Config{
		Secret:   "pion-test-secret-0123456789",
		Listen:   "127.0.0.1:0",
		PublicIP: netip.MustParseAddr("127.0.0.1"),
		// Loopback is denied by default; this test allows it explicitly,
		// as an operator would allow a private range.
		Peers:        turn.PeerPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		MinRelayPort: 61000,
		MaxRelayPort: 61999,
	})
	if err != nil {
		t.Fatalf("start TURN: %v", err)
	}
	t.Cleanup(func() { relay.Close() })
	provider := &turn.Provider{Secret: "pion-test-secret-0123456789", Builtin: relay, TTL: time.Hour}
	return startServer(t, "", append([]func(*Config){func(c *Config) { c.ICE = provider }}, opts...)...), relay
}

// notifyingICE passes on to an ICE provider, and says on revoked each
// member it revoked, once the revocation is done.
type notifyingICE struct {
	ICEProvider
	revoked chan string
}

func (n *notifyingICE) Revoke(ctx context.Context, member string) error {
	err := n.ICEProvider.Revoke(ctx, member)
	n.revoked <- member
	return err
}

// joinedTURN returns the member id and TURN credentials of a joined reply.
func joinedTURN(t *testing.T, joined msg) (member, user, pass string) {
	t.Helper()
	servers, _ := iceOf(t, joined)
	for _, s := range servers {
		if e := msg(s.(map[string]any)); e.str("username") != "" {
			return joined.obj("self").str("id"), e.str("username"), e.str("credential")
		}
	}
	t.Fatalf("no TURN credentials in %v", servers)
	return "", "", ""
}

// allocate asks relay for a relay with the credentials, over UDP, and
// releases it at once.
func allocate(t *testing.T, relay *turn.Server, user, pass string) error {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = turntest.Allocate(t, conn, "127.0.0.1:"+strconv.Itoa(relay.Port()), user, pass)
	return err
}

// TestDiscardedRoomsMembersAreRefusedARelay lets a room's discard clock
// run out with its members offline: the TURN credentials they were given
// for it open no relay any more, as after a kick, though they have not
// expired; a member of another room still gets one.
func TestDiscardedRoomsMembersAreRefusedARelay(t *testing.T) {
	revoked := make(chan string, 4)
	ts, relay := startRelayedServer(t, func(c *Config) {
		c.ICE = &notifyingICE{ICEProvider: c.ICE, revoked: revoked}
		c.DiscardDelay = 100 * time.Millisecond
	})
	ca, cb := dial(t, ts), dial(t, ts)
	created := ca.mustCall("create", map[string]any{"room": "Discarded", "name": "Ann"})
	joined := cb.mustCall("join", map[string]any{"room": created.obj("room").str("id"), "invite": invite(ca, nil), "name": "Bob"})
	other := dial(t, ts).mustCall("create", map[string]any{"room": "Alive", "name": "Cy"})
	type creds struct{ member, user, pass string }
	var members []creds
	for _, r := range []msg{created, joined} {
		id, u, p := joinedTURN(t, r)
		if err := allocate(t, relay, u, p); err != nil {
			t.Fatalf("member %s gets no relay before the discard: %v", id, err)
		}
		members = append(members, creds{id, u, p})
	}

	cb.close()
	ca.close()
	want := map[string]bool{members[0].member: true, members[1].member: true}
	for len(want) > 0 {
		select {
		case m := <-revoked:
			if !want[m] {
				t.Fatalf("revoked %s, not a member of the discarded room", m)
			}
			delete(want, m)
		case <-time.After(waitTimeout):
			t.Fatalf("the discarded room's members %v were not revoked", want)
		}
	}
	if _, err := ts.store.Get(t.Context(), created.obj("room").str("id")); err == nil {
		t.Error("the room was not discarded")
	}
	for _, m := range members {
		if err := allocate(t, relay, m.user, m.pass); err == nil {
			t.Errorf("member %s of the discarded room opened a relay", m.member)
		}
	}
	if _, u, p := joinedTURN(t, other); allocate(t, relay, u, p) != nil {
		t.Error("a member of another room gets no relay")
	}
}

// runPair runs two turntest peers through ts, the first creating the room.
func runPair(t *testing.T, ts *testServer, relayOnly bool, bulk int) (a, b *turntest.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	invited := make(chan [2]string, 1)
	type outcome struct {
		res *turntest.Result
		err error
	}
	resA, resB := make(chan outcome, 1), make(chan outcome, 1)
	opts := turntest.Options{URL: ts.wsURL(), RelayOnly: relayOnly, Loopback: true, BulkBytes: bulk, Logf: t.Logf}
	oa := opts
	oa.Name, oa.CreateRoom = "A", "Relay test"
	oa.OnInvite = func(room, token string) { invited <- [2]string{room, token} }
	go func() {
		r, err := turntest.Run(ctx, oa)
		resA <- outcome{r, err}
	}()
	var inv [2]string
	select {
	case inv = <-invited:
	case o := <-resA:
		t.Fatalf("A ended before inviting: %v", o.err)
	}
	ob := opts
	ob.Name, ob.Room, ob.Invite = "B", inv[0], inv[1]
	go func() {
		r, err := turntest.Run(ctx, ob)
		resB <- outcome{r, err}
	}()
	oA, oB := <-resA, <-resB
	if oA.err != nil || oB.err != nil {
		t.Fatalf("A: %v; B: %v", oA.err, oB.err)
	}
	return oA.res, oB.res
}

// TestPionPeersThroughTheBuiltinRelay forces relay (ICETransportPolicy
// "relay") with the ICE servers the joined reply carries: both peers reach
// each other only through the built-in TURN server, with a chat message
// and Opus audio each way.
func TestPionPeersThroughTheBuiltinRelay(t *testing.T) {
	ts, relay := startRelayedServer(t)
	a, b := runPair(t, ts, true, 0)
	for name, r := range map[string]*turntest.Result{"A": a, "B": b} {
		if r.Local.Type != "relay" {
			t.Errorf("%s's selected local candidate is %s, want relay", name, r.Local)
		}
		if r.Local.Address != "127.0.0.1" || r.Local.Port < 61000 || r.Local.Port > 61999 {
			t.Errorf("%s's relay address %s is not one of the server's relay ports", name, r.Local)
		}
		if r.AudioPackets < 25 {
			t.Errorf("%s received %d audio packets", name, r.AudioPackets)
		}
		if len(r.ICEServers) != 2 {
			t.Errorf("%s got ICE servers %+v, want the built-in STUN and TURN entries", name, r.ICEServers)
		}
	}
	if a.Chat != "hello from B" || b.Chat != "hello from A" {
		t.Errorf("chat: A got %q, B got %q", a.Chat, b.Chat)
	}
	t.Logf("connected through the relay in %v / %v; pair A %s ⇄ %s", a.Connected, b.Connected, a.Local, a.Remote)
	// The peers closed their connections: their relays are released.
	deadline := time.Now().Add(5 * time.Second)
	for relay.AllocationCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d allocations left after both peers closed", relay.AllocationCount())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRelayThroughputOnLoopback measures a data-channel bulk transfer
// relayed by the built-in server and direct, in the same run, on loopback.
// It runs only with LEPEERCHAT_BENCH_RELAY set (to a size in MB, or 1 for
// the default 64 MB): go test -run RelayThroughput ./signal/ (without -race
// for meaningful figures).
func TestRelayThroughputOnLoopback(t *testing.T) {
	mb := benchSize(t)
	ts, _ := startRelayedServer(t)
	for _, relayOnly := range []bool{true, false, true, false} {
		a, _ := runPair(t, ts, relayOnly, mb<<20)
		if a.Relayed() != relayOnly {
			t.Fatalf("relay only %v, but the pair is %s ⇄ %s", relayOnly, a.Local, a.Remote)
		}
		t.Logf("relayed=%v: %d MiB in %v = %.1f MB/s (pair %s ⇄ %s)", relayOnly, mb, a.Bulk.Round(time.Millisecond), a.BulkMBps(), a.Local, a.Remote)
	}
}

func benchSize(t *testing.T) int {
	v := os.Getenv("LEPEERCHAT_BENCH_RELAY")
	if v == "" {
		t.Skip("set LEPEERCHAT_BENCH_RELAY to measure (a size in MiB; 1 means 64)")
	}
	mb, err := strconv.Atoi(v)
	if err != nil || mb < 1 {
		t.Fatalf("LEPEERCHAT_BENCH_RELAY=%q: want a size in MiB", v)
	}
	if mb == 1 {
		mb = 64
	}
	return mb
}
