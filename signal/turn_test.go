package signal

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"lepeerchat/turn"
)

// fakeICE is an ICE provider that records what it is asked. With a ttl, it
// mints numbered credentials that expire after it.
type fakeICE struct {
	ttl time.Duration

	mu      sync.Mutex
	minted  int
	hosts   []string
	revoked []string
}

func (f *fakeICE) ICEServers(member, host string) ([]turn.ICEServer, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.minted++
	f.hosts = append(f.hosts, host)
	if f.ttl == 0 {
		return []turn.ICEServer{{URLs: []string{"stun:stun.example.org"}}}, time.Time{}
	}
	return []turn.ICEServer{{URLs: []string{"turn:turn.example.org"}, Username: fmt.Sprintf("%d:%s", f.minted, member), Credential: "pw"}},
		time.Now().Add(f.ttl)
}

func (f *fakeICE) Revoke(_ context.Context, member string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, member)
	return nil
}

func (f *fakeICE) hostList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.hosts)
}

func (f *fakeICE) revokedList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.revoked)
}

// iceOf returns the servers and expiry of a joined or ice.servers message.
func iceOf(t *testing.T, m msg) ([]any, string) {
	t.Helper()
	servers, ok := m["iceServers"].([]any)
	if !ok {
		t.Fatalf("%s without iceServers: %v", m.str("type"), m)
	}
	return servers, m.str("iceExpires")
}

func TestJoinedCarriesICEServers(t *testing.T) {
	// Without a provider, no field at all.
	plain := startServer(t, "")
	c := dial(t, plain)
	r := c.mustCall("create", map[string]any{"room": "Plain", "name": "Ann"})
	if _, ok := r["iceServers"]; ok {
		t.Errorf("joined has iceServers without an ICE provider: %v", r)
	}

	ice := &fakeICE{ttl: time.Hour}
	ts := startServer(t, "", func(c *Config) { c.ICE = ice })
	ca := dial(t, ts)
	r = ca.mustCall("create", map[string]any{"room": "Relayed", "name": "Ann"})
	servers, expires := iceOf(t, r)
	s0, _ := servers[0].(map[string]any)
	if s0["username"] != "1:"+r.obj("self").str("id") || s0["credential"] != "pw" {
		t.Errorf("servers %v not minted for the member", servers)
	}
	if exp, err := time.Parse(time.RFC3339Nano, expires); err != nil || time.Until(exp) < 59*time.Minute {
		t.Errorf("iceExpires %q (%v)", expires, err)
	}
	// The provider is given the host the browser reached.
	u, _ := url.Parse(ts.http.URL)
	if hosts := ice.hostList(); hosts[0] != u.Host {
		t.Errorf("provider asked for host %q, want %q", hosts[0], u.Host)
	}
	// Joining and rejoining members get theirs too.
	owner := member{room: r.obj("room").str("id"), id: r.obj("self").str("id"), secret: r.obj("self").str("secret")}
	cb := dial(t, ts)
	rb := cb.mustCall("join", map[string]any{"room": owner.room, "invite": invite(ca, nil), "name": "Bob"})
	iceOf(t, rb)
	cb.mustCall("leave", nil)
	ca.close()
	cc := dial(t, ts)
	iceOf(t, cc.mustCall("rejoin", owner.creds()))

	// Credentials that never expire (STUN only) carry no expiry.
	stun := &fakeICE{}
	ts2 := startServer(t, "", func(c *Config) { c.ICE = stun })
	r = dial(t, ts2).mustCall("create", map[string]any{"room": "Stun", "name": "Ann"})
	if _, expires := iceOf(t, r); expires != "" {
		t.Errorf("iceExpires %q for servers without credentials", expires)
	}
}

func TestICEServersAreRefreshedBeforeExpiry(t *testing.T) {
	ice := &fakeICE{ttl: 2 * time.Second}
	ts := startServer(t, "", func(c *Config) { c.ICE = ice })
	c := dial(t, ts)
	start := time.Now()
	r := c.mustCall("create", map[string]any{"room": "Refresh", "name": "Ann"})
	_, firstExp := iceOf(t, r)

	// A quarter of the lifetime before expiry (1.5 s here), a push.
	ev := c.event("ice.servers")
	if ev["re"] != nil {
		t.Errorf("pushed ice.servers has re: %v", ev)
	}
	if d := time.Since(start); d < time.Second || d > 2*time.Second {
		t.Errorf("refresh came after %v, want about 1.5 s", d)
	}
	servers, exp := iceOf(t, ev)
	if exp <= firstExp {
		t.Errorf("refreshed expiry %s not after %s", exp, firstExp)
	}
	if s0, _ := servers[0].(map[string]any); s0["username"] != "2:"+r.obj("self").str("id") {
		t.Errorf("refreshed servers %v are not newly minted", servers)
	}
	// And again.
	c.event("ice.servers")

	// Once the connection leaves the room, the pushes stop.
	c.mustCall("leave", nil)
	c.noEvent("ice.servers", 2500*time.Millisecond)
	if got := ice.revokedList(); len(got) != 0 {
		t.Errorf("a plain leave revoked %v", got)
	}
}

func TestDepartedMembersRelaysAreRevoked(t *testing.T) {
	ice := &fakeICE{ttl: time.Hour}
	ts := startServer(t, "", func(c *Config) { c.ICE = ice })
	ca, cb, cc := dial(t, ts), dial(t, ts), dial(t, ts)
	owner := createRoom(ca, "Revoke", "Ann")
	bob := joinRoom(cb, owner.room, invite(ca, nil), "Bob")
	cy := joinRoom(cc, owner.room, invite(ca, nil), "Cy")

	// A lost connection is not leaving: the call may go on through the
	// relay while the browser reconnects.
	cc.close()
	ca.event("member.disconnected")
	if got := ice.revokedList(); len(got) != 0 {
		t.Fatalf("a disconnection revoked %v", got)
	}

	ca.mustCall("kick", map[string]any{"member": bob.id})
	cb.event("session.kicked")
	if got := ice.revokedList(); !slices.Equal(got, []string{bob.id}) {
		t.Fatalf("after kick, revoked %v, want [%s]", got, bob.id)
	}

	cc2 := dial(t, ts)
	cc2.mustCall("rejoin", cy.creds())
	cc2.mustCall("leave", map[string]any{"forever": true})
	if got := ice.revokedList(); !slices.Equal(got, []string{bob.id, cy.id}) {
		t.Fatalf("after leave forever, revoked %v, want [%s %s]", got, bob.id, cy.id)
	}
	// The last member leaving forever discards the room, and is revoked too.
	ca.mustCall("leave", map[string]any{"forever": true})
	if got := ice.revokedList(); !slices.Equal(got, []string{bob.id, cy.id, owner.id}) {
		t.Fatalf("after the owner left forever, revoked %v", got)
	}
}
