package signal

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"lepeerchat/turn"
	"lepeerchat/turn/turntest"
)

// startRelayedServer starts a signal server whose members get the ICE
// servers of a built-in TURN server on 127.0.0.1.
func startRelayedServer(t *testing.T) (*testServer, *turn.Server) {
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
	return startServer(t, "", func(c *Config) { c.ICE = provider }), relay
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
