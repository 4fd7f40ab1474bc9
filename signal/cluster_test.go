package signal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"lepeerchat/store"
	"lepeerchat/store/redisstore"
	"lepeerchat/store/redisstore/redistest"
)

// The cluster tests run two server nodes in this process, each with its own
// Redis store and bus, sharing one redis-server started for the test, and
// clients that speak to either node. A node is killed the hard way: its
// Redis connections are closed (it stops announcing itself and can record
// nothing more), then its TCP connections are cut without a close frame.

// nodeTTL is how long a silent node is taken for alive in these tests.
const nodeTTL = 2 * time.Second

// cluster is one redis-server and a key prefix shared by nodes.
type cluster struct {
	t      *testing.T
	redis  *redistest.Server
	prefix string
}

func newCluster(t *testing.T, persistent bool) *cluster {
	t.Helper()
	return &cluster{t: t, redis: redistest.Start(t, persistent), prefix: fmt.Sprintf("c%d:", time.Now().UnixNano())}
}

// testNode is a testServer whose store and bus are Redis's, and whose TCP
// connections can be cut.
type testNode struct {
	*testServer
	conns *connTracker
}

// startNode starts a node named name.
func (c *cluster) startNode(name string, opts ...func(*Config)) *testNode {
	t := c.t
	t.Helper()
	st, err := redisstore.Open(context.Background(), c.redis.URL(), redisstore.Options{
		Prefix: c.prefix, NodeTTL: nodeTTL, Logger: testLogger(t, name),
	})
	if err != nil {
		t.Fatalf("open redis store: %v", err)
	}
	cfg := Config{Store: st, Bus: st.Bus(), Node: name, Logger: testLogger(t, name)}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("start server: %v", err)
	}
	hs := httptest.NewUnstartedServer(srv)
	tracker := &connTracker{Listener: hs.Listener}
	hs.Listener = tracker
	hs.Start()
	ts := &testServer{t: t, srv: srv, http: hs, store: st, cfg: srv.cfg}
	t.Cleanup(ts.stop)
	return &testNode{ts, tracker}
}

// kill stops the node as a crash would: it records nothing more, stops
// announcing itself, and its clients' connections drop without a close
// frame.
func (n *testNode) kill() {
	n.store.Close()
	n.conns.cutAll()
	n.http.Listener.Close()
}

// connTracker is a listener that remembers its connections, to cut them.
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connTracker) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *connTracker) cutAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN
		}
		c.Close()
	}
}

// testLogger logs through t until the test ends, then drops.
func testLogger(t *testing.T, node string) *slog.Logger {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf("%s: %s", node, strings.TrimSpace(string(p)))
		}
		return len(p), nil
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestClusterTwoNodes is the multi-node story: members on two nodes set up
// a WebRTC call through Redis; one node dies and its member rejoins on the
// other while the call goes on; a member that does not come back is
// reported gone; Redis itself stops and starts again and the nodes carry
// on, answering "unavailable" meanwhile.
func TestClusterTwoNodes(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, true)
	na, nb := cl.startNode("node-a"), cl.startNode("node-b")

	// Alice on node A creates the room; Bob joins on node B, Carol on A.
	ca := dial(t, na.testServer)
	alice := createRoom(ca, "Across nodes", "alice")
	cb := dial(t, nb.testServer)
	bob := joinRoom(cb, alice.room, invite(ca, nil), "bob")
	if ev := ca.event("member.joined"); ev.obj("member").str("id") != bob.id {
		t.Fatalf("member.joined on node A names %v, want bob %s", ev.obj("member"), bob.id)
	}
	cc := dial(t, na.testServer)
	carol := joinRoom(cc, alice.room, invite(ca, nil), "carol")
	cb.event("member.joined")
	ca.event("member.joined")

	// A WebRTC handshake between a pion peer behind node A and one behind
	// node B: every offer, answer and candidate crosses Redis.
	a, b := newPionPeer(t, "A", ca), newPionPeer(t, "B", cb)
	a.remote = bob.id
	dcA, err := a.pc.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	a.attachChannel(dcA)
	dcB := make(chan *webrtc.DataChannel, 1)
	b.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		b.attachChannel(dc)
		dcB <- dc
	})
	a.offer(true)
	start := time.Now()
	gotA, gotB := exchange(t, a, b)
	if gotA != "hello from B" || gotB != "hello from A" {
		t.Fatalf("A got %q, B got %q", gotA, gotB)
	}
	t.Logf("handshake across nodes in %v", time.Since(start).Round(time.Millisecond))

	// Node A dies. Alice's browser reconnects to node B and rejoins with
	// her secret; Carol's does not come back.
	na.kill()
	for _, c := range []*client{ca, cc} {
		select {
		case <-c.closed:
		case <-time.After(waitTimeout):
			t.Fatal("a client of the dead node was not cut off")
		}
	}
	ca2 := dial(t, nb.testServer)
	rejoined := ca2.mustCall("rejoin", alice.creds())
	if rejoined.obj("room").str("owner") != alice.id {
		t.Fatalf("the room changed hands across the failure: %v", rejoined.obj("room"))
	}
	// The call itself never needed the server: the data channel still
	// carries messages.
	if err := dcA.SendText("still here"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-b.received:
		if m != "still here" {
			t.Fatalf("B got %q", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the data channel stopped with the node")
	}
	// Signalling between Alice, now on node B, and Bob works again.
	ca2.mustCall("signal", map[string]any{"to": bob.id, "data": map[string]any{"after": "failover"}})
	if ev := cb.event("signal"); ev.str("from") != alice.id {
		t.Fatalf("signal after failover from %q", ev.str("from"))
	}

	// Once node A's announcement has expired, node B drops its remaining
	// connection: Bob and Alice are told that Carol is gone, and never
	// that Alice was.
	ev := awaitEvent(cb, "member.disconnected", 3*nodeTTL+5*time.Second)
	if ev.obj("member").str("id") != carol.id {
		t.Fatalf("member.disconnected names %v, want carol", ev.obj("member"))
	}
	ca2.event("member.disconnected")
	r, err := nb.store.Get(context.Background(), alice.room)
	if err != nil {
		t.Fatal(err)
	}
	for k := range r.Conns {
		if strings.HasPrefix(k, "node-a/") {
			t.Fatalf("the dead node's connection %s is still recorded: %v", k, r.Conns)
		}
	}
	if !r.Online(alice.id) || !r.Online(bob.id) || r.Online(carol.id) {
		t.Fatalf("after the takeover conns = %v", r.Conns)
	}
	cb.noEvent("member.disconnected", 200*time.Millisecond)

	// Carol comes back later, on a new node C, and is announced.
	nc := cl.startNode("node-c")
	cc2 := dial(t, nc.testServer)
	cc2.mustCall("rejoin", carol.creds())
	cb.event("member.connected")

	// Redis stops. Whatever needs it is answered "unavailable"; the
	// connections stay open. Nodes B and C are both alive throughout.
	cl.redis.Kill()
	ca2.refused("unavailable", "invite", nil)
	ca2.refused("unavailable", "signal", map[string]any{"to": bob.id, "data": map[string]any{}})
	cb.refused("unavailable", "status", map[string]any{"rooms": []any{bob.creds()}})
	ca2.mustCall("ping", nil)
	// Carol leaves meanwhile: her node cannot record it yet.
	cc2.close()
	// Longer than a node's announcement lasts: every announcement has
	// expired when Redis comes back, and no node may take another for dead.
	time.Sleep(nodeTTL + 500*time.Millisecond)
	cl.redis.Restart()

	// The nodes find Redis again by themselves.
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := ca2.call("signal", map[string]any{"to": bob.id, "data": map[string]any{"after": "redis"}})
		if r.str("type") == "ok" {
			break
		}
		if c := r.code(); c != "unavailable" && c != "peer_unavailable" {
			t.Fatalf("signal while redis comes back: %v", r)
		}
		if time.Now().After(deadline) {
			t.Fatalf("signalling not back within 15 s of redis: %v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ev := cb.event("signal"); ev.obj("data").str("after") != "redis" {
		t.Fatalf("signal after redis came back = %v", ev)
	}
	invite(ca2, nil)
	// Once Redis is back, node C records that Carol left.
	for _, c := range []*client{cb, ca2} {
		if ev := awaitEvent(c, "member.disconnected", 15*time.Second); ev.obj("member").str("id") != carol.id {
			t.Fatalf("member.disconnected after redis came back = %v, want carol", ev)
		}
	}
	// Nobody was taken for dead meanwhile: no connection was closed and
	// nobody else was reported gone.
	time.Sleep(2 * nodeTTL)
	for name, c := range map[string]*client{"alice": ca2, "bob": cb} {
		select {
		case err := <-c.closed:
			t.Fatalf("%s's connection was closed after redis came back: %v", name, err)
		default:
		}
		c.noEvent("member.disconnected", 0)
	}
	r, err = nb.store.Get(context.Background(), alice.room)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Conns) != 2 || !r.Online(alice.id) || !r.Online(bob.id) {
		t.Fatalf("after the redis restart conns = %v, want alice and bob", r.Conns)
	}
}

// awaitEvent is client.event with its own time limit.
func awaitEvent(c *client, typ string, within time.Duration) msg {
	c.t.Helper()
	for i, m := range c.queue {
		if m.str("type") == typ && m["re"] == nil {
			c.queue = append(c.queue[:i:i], c.queue[i+1:]...)
			return m
		}
	}
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %s", typ)
			}
			if m.str("type") == typ && m["re"] == nil {
				return m
			}
			c.queue = append(c.queue, m)
		case <-deadline:
			c.t.Fatalf("no %s within %v (other messages: %v)", typ, within, c.queue)
			return nil
		}
	}
}

// exchange drives two pion peers' signalling until each has received the
// other's hello on the data channel.
func exchange(t *testing.T, a, b *pionPeer) (gotA, gotB string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	for _, m := range takeQueued(a.c) {
		a.serverMessage(m)
	}
	for _, m := range takeQueued(b.c) {
		b.serverMessage(m)
	}
	for gotA == "" || gotB == "" || len(a.pending) > 0 || len(b.pending) > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("no exchange within the time limit: A got %q, B got %q, unanswered A %v B %v, ICE A %s B %s",
				gotA, gotB, a.pending, b.pending, a.pc.ICEConnectionState(), b.pc.ICEConnectionState())
		case err := <-a.errs:
			t.Fatal(err)
		case err := <-b.errs:
			t.Fatal(err)
		case c := <-a.local:
			a.localCandidate(c)
		case c := <-b.local:
			b.localCandidate(c)
		case m, ok := <-a.c.in:
			if !ok {
				t.Fatal("A's signalling connection closed")
			}
			a.serverMessage(m)
		case m, ok := <-b.c.in:
			if !ok {
				t.Fatal("B's signalling connection closed")
			}
			b.serverMessage(m)
		case gotA = <-a.received:
		case gotB = <-b.received:
		}
	}
	return gotA, gotB
}

// TestClusterClocksOutliveTheirNode kills the node that held two rooms: one
// whose clock that node had started, one whose member was still connected
// to it. The surviving node discards both on time.
func TestClusterClocksOutliveTheirNode(t *testing.T) {
	t.Parallel()
	const delay = 1500 * time.Millisecond
	cl := newCluster(t, false)
	withDelay := func(c *Config) { c.DiscardDelay = delay }
	na, nb := cl.startNode("node-a", withDelay), cl.startNode("node-b", withDelay)

	c1 := dial(t, na.testServer)
	left := createRoom(c1, "left", "Erin")
	c1.close()
	var deadline time.Time
	waitFor(t, "discard clock started", func() bool {
		r, err := nb.store.Get(context.Background(), left.room)
		deadline = r.DiscardAt
		return err == nil && !deadline.IsZero()
	})
	c2 := dial(t, na.testServer)
	stayed := createRoom(c2, "stayed", "Dave")
	killed := time.Now()
	na.kill()

	waitGone := func(id string, within time.Duration) time.Time {
		t.Helper()
		end := time.Now().Add(within)
		for time.Now().Before(end) {
			_, err := nb.store.Get(context.Background(), id)
			if errors.Is(err, store.ErrNotFound) {
				return time.Now()
			}
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("room %s still there after %v", id, within)
		return time.Time{}
	}
	at := waitGone(left.room, time.Until(deadline)+2*time.Second)
	if at.Before(deadline) || at.Sub(deadline) > time.Second {
		t.Errorf("room discarded at %v, deadline %v: want within a second after", at.Format(time.StampMilli), deadline.Format(time.StampMilli))
	}
	t.Logf("room discarded %v after its deadline by the surviving node", at.Sub(deadline).Round(time.Millisecond))
	// The other: node A's announcement expires, node B takes its
	// connection over (B, just started, waits NodeTTL and 3 s more before
	// it takes anyone for dead), and the clock runs.
	within := nodeTTL + 3*time.Second + nodeTTL/4 + delay + 3*time.Second
	at = waitGone(stayed.room, within)
	if d := at.Sub(killed); d < delay {
		t.Errorf("room of the dead node discarded %v after the kill, before its delay %v", d, delay)
	}
	t.Logf("room of the dead node discarded %v after the kill", at.Sub(killed).Round(time.Millisecond))
	dial(t, nb.testServer).refused("room_not_found", "rejoin", stayed.creds())
}

// TestClusterDuplicateNameRace sends joins under one name to two nodes at
// once: exactly one wins.
func TestClusterDuplicateNameRace(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, false)
	nodes := []*testNode{cl.startNode("node-a"), cl.startNode("node-b")}
	a := dial(t, nodes[0].testServer)
	owner := createRoom(a, "r", "Ann")
	token := invite(a, nil)
	for round := range 5 {
		const n = 8
		clients := make([]*client, n)
		for i := range clients {
			clients[i] = dial(t, nodes[i%2].testServer)
		}
		name := fmt.Sprintf("zoë%d", round)
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() {
				c.sendRaw(`{"id":1,"type":"join","room":"` + owner.room + `","invite":"` + token + `","name":"` + name + `"}`)
			})
		}
		wg.Wait()
		won := 0
		for _, c := range clients {
			r := c.await("join reply", func(m msg) bool { return m["re"] == float64(1) })
			switch {
			case r.str("type") == "joined":
				won++
			case r.code() == "name_taken":
			default:
				t.Fatalf("unexpected reply %v", r)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d joins won; want exactly one", round, won)
		}
	}
}

// TestClusterLockRacesInvitation locks the room on one node while guests
// redeem an invitation on the other: every join that succeeded is in the
// room, every other was refused because of the lock, and none got in
// after the lock was acknowledged.
func TestClusterLockRacesInvitation(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, false)
	na, nb := cl.startNode("node-a"), cl.startNode("node-b")
	a := dial(t, na.testServer)
	owner := createRoom(a, "r", "Ann")
	token := invite(a, nil)
	const n = 6
	guests := make([]*client, n)
	for i := range guests {
		guests[i] = dial(t, nb.testServer)
	}
	for i, g := range guests {
		go g.sendRaw(fmt.Sprintf(`{"id":1,"type":"join","room":%q,"invite":%q,"name":"g%d"}`, owner.room, token, i))
	}
	a.mustCall("lock", map[string]any{"locked": true})
	locked := time.Now()
	joined := 0
	for _, g := range guests {
		r := g.await("join reply", func(m msg) bool { return m["re"] == float64(1) })
		switch {
		case r.str("type") == "joined":
			joined++
		case r.code() == "room_locked":
		default:
			t.Fatalf("unexpected reply %v", r)
		}
	}
	r, err := nb.store.Get(context.Background(), owner.room)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Members) != 1+joined || !r.Locked {
		t.Fatalf("room has %d members and locked=%v; want %d and locked", len(r.Members), r.Locked, 1+joined)
	}
	late := dial(t, nb.testServer)
	late.refused("room_locked", "join", map[string]any{"room": owner.room, "invite": token, "name": "late"})
	t.Logf("%d of %d joins got in before the lock (acknowledged at %v)", joined, n, locked.Format(time.StampMicro))
}

// eagerBus delivers a signal to every new subscription as soon as it is
// made, as a bus may when a message for the member is on its way while a
// connection is still being admitted.
type eagerBus struct{ store.Bus }

func (b eagerBus) Subscribe(roomID, memberID string, deliver func([]byte)) func() {
	cancel := b.Bus.Subscribe(roomID, memberID, deliver)
	deliver(busFrame(busClient, encode(header{Type: "signal"})))
	return cancel
}

// TestRefusedRejoinSeesNothing checks that a connection that claims to be
// a member, and is refused, receives none of the messages that reached
// the member's channel while its claim was being checked; an admitted one
// receives them after its joined reply.
func TestRefusedRejoinSeesNothing(t *testing.T) {
	ts := startServer(t, "", func(c *Config) { c.Bus = eagerBus{c.Bus} })
	a := dial(t, ts)
	owner := createRoom(a, "r", "Ann")
	takeQueued(a)

	thief := dial(t, ts)
	wrong := owner
	wrong.secret = "not-the-secret"
	thief.refused("bad_credentials", "rejoin", wrong.creds())
	thief.noEvent("signal", 100*time.Millisecond)

	a2 := dial(t, ts)
	a2.sendRaw(`{"id":1,"type":"rejoin","room":"` + owner.room + `","member":"` + owner.id + `","secret":"` + owner.secret + `"}`)
	if r := a2.next(); r.str("type") != "joined" {
		t.Fatalf("first message after rejoin = %v, want the joined reply", r)
	}
	a2.event("signal")
}

// TestClusterRoomsGaugeCountsEveryNodesRooms: rooms made on one node of a
// cluster show in the other node's rooms gauge within its recount, and
// stopping the recount ends its goroutine.
func TestClusterRoomsGaugeCountsEveryNodesRooms(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, false)
	na, nb := cl.startNode("node-a"), cl.startNode("node-b")
	createRoom(dial(t, na.testServer), "One", "ann")
	createRoom(dial(t, na.testServer), "Two", "ann")

	rooms := func(n *testNode) float64 {
		families, err := n.srv.cfg.Metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "lepeerchat_rooms" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no lepeerchat_rooms")
		return 0
	}
	if got := rooms(nb); got != 0 {
		t.Fatalf("node B counts %v rooms before any recount, want 0 (node A made them)", got)
	}
	stop := nb.srv.recountRooms(10 * time.Millisecond)
	deadline := time.Now().Add(waitTimeout)
	for rooms(nb) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("node B counts %v rooms, want 2", rooms(nb))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if got := rooms(na); got != 2 {
		t.Errorf("node A counts %v rooms, want 2", got)
	}
}
