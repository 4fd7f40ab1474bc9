package room_test

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"lepeerchat/room"
)

func connect(t *testing.T, r *room.Room, member, node, id string) {
	t.Helper()
	if err := r.Connect(member, room.Conn{Node: node, ID: id}); err != nil {
		t.Fatalf("Connect(%s on %s/%s): %v", member, node, id, err)
	}
}

// twoMembers is a room of Olga (the owner) and Bob, nobody connected.
func twoMembers(t *testing.T, c *clock) *room.Room {
	t.Helper()
	r := newRoom(t, c)
	tok := mustInvite(t, r, "i-1", 0, false, c.now())
	mustJoin(t, r, tok, "Bob", "m-bob", c.now())
	return r
}

// withGuests adds guests m-1 … m-n to r.
func withGuests(t *testing.T, r *room.Room, c *clock, n int) {
	t.Helper()
	tok := mustInvite(t, r, "i-guests", 0, false, c.now())
	for i := 1; i <= n; i++ {
		mustJoin(t, r, tok, fmt.Sprintf("Guest %d", i), fmt.Sprintf("m-%d", i), c.now())
	}
}

func TestConnectStopsTheDiscardClock(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	connect(t, r, "m-bob", "n1", "c1")
	r.Disconnect(room.Conn{Node: "n1", ID: "c1"}, c.now(), discardDelay)
	if r.DiscardAt.IsZero() {
		t.Fatal("the clock did not start")
	}

	connect(t, r, ownerID, "n2", "c1")
	if !r.DiscardAt.IsZero() {
		t.Errorf("DiscardAt = %v after a reconnection, want zero", r.DiscardAt)
	}
	if r.Discardable(c.advance(24 * time.Hour)) {
		t.Error("a room with a connection is discardable")
	}
}

func TestTheLastDisconnectionStartsTheDiscardClockExactly(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	connect(t, r, "m-bob", "n1", "c1")

	now := c.advance(3*time.Hour + 456*time.Millisecond + 7*time.Nanosecond)
	r.Disconnect(room.Conn{Node: "n1", ID: "c1"}, now, discardDelay)
	if want := now.Add(discardDelay); !r.DiscardAt.Equal(want) {
		t.Errorf("DiscardAt = %v, want exactly %v", r.DiscardAt, want)
	}
	if len(r.Conns) != 0 || r.Online("m-bob") {
		t.Errorf("connections = %v after the last disconnection", r.Conns)
	}
}

func TestTheClockStaysStoppedWhileAnyConnectionRemains(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second room.Conn
		member string
	}{
		{"a second member on the same node", room.Conn{Node: "n1", ID: "c2"}, ownerID},
		{"a second member on another node", room.Conn{Node: "n2", ID: "c1"}, ownerID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := twoMembers(t, c)
			first := room.Conn{Node: "n1", ID: "c1"}
			connect(t, r, "m-bob", first.Node, first.ID)
			connect(t, r, tc.member, tc.second.Node, tc.second.ID)

			r.Disconnect(first, c.advance(time.Minute), discardDelay)
			if !r.DiscardAt.IsZero() {
				t.Fatalf("DiscardAt = %v with a connection left, want zero", r.DiscardAt)
			}
			if !r.Online(tc.member) {
				t.Errorf("%s is not online", tc.member)
			}

			last := c.advance(time.Minute)
			r.Disconnect(tc.second, last, discardDelay)
			if want := last.Add(discardDelay); !r.DiscardAt.Equal(want) {
				t.Errorf("DiscardAt = %v, want %v", r.DiscardAt, want)
			}
		})
	}
}

func TestARepeatedDisconnectionDoesNotRestartTheClock(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	conn := room.Conn{Node: "n1", ID: "c1"}
	connect(t, r, "m-bob", conn.Node, conn.ID)
	left := c.advance(time.Minute)
	r.Disconnect(conn, left, discardDelay)
	r.Disconnect(conn, c.advance(time.Minute), discardDelay)
	r.Disconnect(room.Conn{Node: "n2", ID: "c9"}, c.advance(time.Minute), discardDelay)
	if want := left.Add(discardDelay); !r.DiscardAt.Equal(want) {
		t.Errorf("DiscardAt = %v, want %v: the clock started at the real last disconnection", r.DiscardAt, want)
	}
}

func TestDisconnectOfAnUnknownConnectionIsHarmless(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	connect(t, r, "m-bob", "n1", "c1")
	before := snapshot(t, r)
	for _, conn := range []room.Conn{
		{Node: "n1", ID: "c-other"},
		{Node: "n2", ID: "c1"},
		{Node: "n1"},
		{},
	} {
		r.Disconnect(conn, c.advance(time.Minute), discardDelay)
	}
	if snapshot(t, r) != before {
		t.Errorf("an unknown disconnection changed the room")
	}
}

func TestConnectRefusesANonMember(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	connect(t, r, "m-bob", "n1", "c1")
	r.Disconnect(room.Conn{Node: "n1", ID: "c1"}, c.now(), discardDelay)
	before := snapshot(t, r)

	for _, id := range []string{"m-stranger", "", "Bob"} {
		wantCode(t, r.Connect(id, room.Conn{Node: "n1", ID: "c2"}), room.CodeNoSuchMember)
	}
	if snapshot(t, r) != before {
		t.Error("a refused Connect changed the room (connections or clock)")
	}
}

func TestDropNodeForgetsExactlyThatNodesConnections(t *testing.T) {
	c := newClock()
	r := newRoom(t, c)
	withGuests(t, r, c, 4)
	connect(t, r, "m-1", "a", "c1")
	connect(t, r, "m-2", "a", "c2")
	connect(t, r, "m-3", "ab", "c1") // node "ab" is not node "a"
	connect(t, r, "m-4", "b", "a")   // nor is a connection whose id is "a"

	r.DropNode("a", c.advance(time.Minute), discardDelay)
	want := map[string]string{
		room.Conn{Node: "ab", ID: "c1"}.Key(): "m-3",
		room.Conn{Node: "b", ID: "a"}.Key():   "m-4",
	}
	if !maps.Equal(r.Conns, want) {
		t.Fatalf("connections = %v, want %v", r.Conns, want)
	}
	if !r.DiscardAt.IsZero() {
		t.Errorf("the clock started with connections left on other nodes")
	}

	r.DropNode("ab", c.advance(time.Minute), discardDelay)
	r.DropNode("nowhere", c.advance(time.Minute), discardDelay)
	if !r.DiscardAt.IsZero() {
		t.Errorf("the clock started with a connection left on node b")
	}
	last := c.advance(time.Minute)
	r.DropNode("b", last, discardDelay)
	if len(r.Conns) != 0 {
		t.Errorf("connections = %v, want none", r.Conns)
	}
	if want := last.Add(discardDelay); !r.DiscardAt.Equal(want) {
		t.Errorf("DiscardAt = %v, want %v", r.DiscardAt, want)
	}
}

func TestDropNodeStartsTheClockOfARoomNobodyIsConnectedTo(t *testing.T) {
	// After a restart, a node drops the connections it held before: the
	// room's clock must run even if those connections were all it had.
	c := newClock()
	r := twoMembers(t, c)
	connect(t, r, "m-bob", "n1", "c1")
	connect(t, r, ownerID, "n1", "c2")
	now := c.advance(time.Hour)
	r.DropNode("n1", now, discardDelay)
	if want := now.Add(discardDelay); !r.DiscardAt.Equal(want) {
		t.Errorf("DiscardAt = %v, want %v", r.DiscardAt, want)
	}
}

func TestDiscardableExactlyAtDiscardAt(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	connect(t, r, "m-bob", "n1", "c1")
	left := c.now()
	r.Disconnect(room.Conn{Node: "n1", ID: "c1"}, left, discardDelay)

	for _, tc := range []struct {
		name  string
		after time.Duration
		want  bool
	}{
		{"just after the last disconnection", 0, false},
		{"one nanosecond before the delay is over", discardDelay - time.Nanosecond, false},
		{"exactly when the delay is over", discardDelay, true},
		{"long after", 48 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Discardable(left.Add(tc.after)); got != tc.want {
				t.Errorf("Discardable = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestARoomWithAStoppedClockIsNeverDiscardable(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	connect(t, r, "m-bob", "n1", "c1")
	for _, at := range []time.Time{c.now(), c.now().Add(365 * 24 * time.Hour), {}} {
		if r.Discardable(at) {
			t.Errorf("Discardable(%v) with a live connection", at)
		}
	}
}

func TestAFreshRoomStartsItsClockOnAnyDisconnection(t *testing.T) {
	// A room nobody has connected to yet has a stopped clock. Disconnect, of
	// any connection, starts it: callers use this when a creator never
	// connects.
	c := newClock()
	r := newRoom(t, c)
	if !r.DiscardAt.IsZero() {
		t.Fatalf("a new room's DiscardAt = %v", r.DiscardAt)
	}
	r.Disconnect(room.Conn{}, c.now(), discardDelay)
	if want := c.now().Add(discardDelay); !r.DiscardAt.Equal(want) {
		t.Errorf("DiscardAt = %v, want %v", r.DiscardAt, want)
	}
}

func TestOnline(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	conn := room.Conn{Node: "n1", ID: "c1"}
	if r.Online("m-bob") || r.Online(ownerID) || r.Online("m-stranger") {
		t.Fatal("someone is online before any connection")
	}
	connect(t, r, "m-bob", conn.Node, conn.ID)
	connect(t, r, "m-bob", conn.Node, conn.ID) // the same connection again
	if len(r.Conns) != 1 {
		t.Errorf("connections = %v, want one", r.Conns)
	}
	if !r.Online("m-bob") || r.Online(ownerID) {
		t.Errorf("online: Bob %v, Olga %v; want only Bob", r.Online("m-bob"), r.Online(ownerID))
	}
	r.Disconnect(conn, c.now(), discardDelay)
	if r.Online("m-bob") {
		t.Error("Bob is online after his only connection closed")
	}
}

func TestAMembersNewConnectionReplacesItsOthers(t *testing.T) {
	c := newClock()
	r := twoMembers(t, c)
	old := room.Conn{Node: "n1", ID: "c1"}
	connect(t, r, ownerID, "n1", "c0")
	connect(t, r, "m-bob", old.Node, old.ID)

	// Bob opens a second tab, or reconnects before his old socket timed
	// out, on another node.
	connect(t, r, "m-bob", "n2", "c7")
	want := map[string]string{
		room.Conn{Node: "n1", ID: "c0"}.Key(): ownerID,
		room.Conn{Node: "n2", ID: "c7"}.Key(): "m-bob",
	}
	if !maps.Equal(r.Conns, want) {
		t.Fatalf("connections = %v, want %v", r.Conns, want)
	}

	// When the old socket finally closes, nothing changes.
	before := snapshot(t, r)
	r.Disconnect(old, c.advance(time.Minute), discardDelay)
	if snapshot(t, r) != before || !r.Online("m-bob") {
		t.Errorf("closing Bob's replaced connection changed the room: %v", r.Conns)
	}
}
