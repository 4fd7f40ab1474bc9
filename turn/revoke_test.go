package turn

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lepeerchat/store/boltstore"
	"lepeerchat/store/redisstore"
	"lepeerchat/store/redisstore/redistest"
)

// wantRefused checks that member's fresh credentials open no relay on s.
func wantRefused(t *testing.T, s *Server, member string) {
	t.Helper()
	u, p := mintFor(member, time.Hour)
	if r, err := turnClient(t, s, u, p).Allocate(); err == nil {
		r.Close()
		t.Errorf("revoked member %s allocated a relay", member)
	}
}

func TestRevocationSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rooms.db")
	st, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := startUnclosed(t, func(c *Config) { c.Revocations = st })
	ua, pa := mintFor("memberA", time.Hour)
	allocate(t, turnClient(t, s, ua, pa))
	if err := s.Revoke(t.Context(), "memberA"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// A new process: a new server over the reopened file.
	st, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s = startTURN(t, func(c *Config) { c.Revocations = st })
	wantRefused(t, s, "memberA")
	// The credentials minted before the revocation are refused too.
	if r, err := turnClient(t, s, ua, pa).Allocate(); err == nil {
		r.Close()
		t.Error("a credential minted before the revocation allocated after the restart")
	}
	ub, pb := mintFor("memberB", time.Hour)
	allocate(t, turnClient(t, s, ub, pb))
}

func TestRevocationOutlivesEveryCredentialOfTheMember(t *testing.T) {
	st := &recordingRevocations{}
	clock := &fakeClock{now: time.Now()}
	s := startTURN(t, func(c *Config) {
		c.Revocations = st
		c.Now = clock.Now
		c.CredentialTTL = 2 * time.Hour
		c.RefreshGrace = 3 * time.Hour
	})
	if err := s.Revoke(t.Context(), "memberA"); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if want := clock.Now().Add(5 * time.Hour); !st.until["memberA"].Equal(want) {
		t.Errorf("revoked until %v, want %v: the credential lifetime and the refresh grace", st.until["memberA"], want)
	}
}

// recordingRevocations is a Revocations that records what it is told.
type recordingRevocations struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (r *recordingRevocations) Revoke(_ context.Context, member string, until time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.until == nil {
		r.until = make(map[string]time.Time)
	}
	r.until[member] = until
	return nil
}

func (r *recordingRevocations) Revoked(_ context.Context, member string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.until[member]
	return ok, nil
}

// openRevocations opens a store on redis to keep a node's revocations in,
// one connection per call (as each node of a cluster has its own), closed
// when the test ends.
func openRevocations(t *testing.T, redis *redistest.Server) *redisstore.Store {
	t.Helper()
	st, err := redisstore.Open(t.Context(), redis.URL(), redisstore.Options{Prefix: "turn-test:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// twoNodes starts two TURN servers sharing revocations through one real
// Redis, as two nodes of a cluster do; the second reads the returned clock.
func twoNodes(t *testing.T) (a, b *Server, clock *fakeClock) {
	t.Helper()
	redis := redistest.Start(t, false)
	clock = &fakeClock{now: time.Now()}
	a = startTURN(t, func(c *Config) { c.Revocations = openRevocations(t, redis) })
	b = startTURN(t, func(c *Config) {
		c.Revocations = openRevocations(t, redis)
		c.Now = clock.Now
	})
	return a, b, clock
}

func TestRevocationSpansTheCluster(t *testing.T) {
	a, b, clock := twoNodes(t)

	// memberA holds a relay on each node when it is kicked on node A.
	ua, pa := mintFor("memberA", time.Hour)
	allocate(t, turnClient(t, a, ua, pa))
	allocate(t, turnClient(t, b, ua, pa))
	if err := a.Revoke(t.Context(), "memberA"); err != nil {
		t.Fatalf("Revoke on node A: %v", err)
	}
	if got := a.Allocations("memberA"); got != 0 {
		t.Errorf("node A still holds %d relays of the kicked member", got)
	}
	// Once node B's answer from the store is older than notRevokedFor,
	// node B refuses it a new relay, and closes the one it held.
	clock.Advance(notRevokedFor)
	wantRefused(t, b, "memberA")
	if got := b.Allocations("memberA"); got != 0 {
		t.Errorf("node B still holds %d relays of the kicked member after refusing it", got)
	}
	// And from now on refuses it without asking Redis again.
	if !b.isRevoked("memberA") {
		t.Error("node B did not remember the revocation it learnt")
	}
	ub, pb := mintFor("memberB", time.Hour)
	allocate(t, turnClient(t, b, ub, pb))
}

func TestAllocationRefusedWhenTheStoreCannotAnswer(t *testing.T) {
	redis := redistest.Start(t, false)
	s := startTURN(t, func(c *Config) { c.Revocations = openRevocations(t, redis) })
	redis.Kill()
	u, p := mintFor("memberA", time.Hour)
	_, err := turnClient(t, s, u, p).Allocate()
	if err == nil || !strings.Contains(err.Error(), "486") {
		t.Errorf("allocation with the store down: %v, want a 486 refusal", err)
	}
}

func TestRelaysOnAnotherNodeCloseAtTheirNextRefresh(t *testing.T) {
	a, b, clock := twoNodes(t)
	u, p := mintFor("memberA", time.Hour)
	cb := turnClient(t, b, u, p)
	allocate(t, cb)
	if err := a.Revoke(t.Context(), "memberA"); err != nil {
		t.Fatal(err)
	}
	// Within recheckEvery of the allocation's look-up, node B does not
	// ask the store again: the relay stays.
	peer := &net.UDPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 9}
	if err := cb.CreatePermission(peer); err != nil {
		t.Fatalf("permission: %v", err)
	}
	if got := b.Allocations("memberA"); got != 1 {
		t.Fatalf("node B holds %d relays of the member before the recheck, want 1", got)
	}
	// Past it, the next refresh finds the revocation and closes the relay.
	clock.Advance(recheckEvery)
	cb.CreatePermission(peer)
	if got := b.Allocations("memberA"); got != 0 {
		t.Errorf("node B holds %d relays of a member revoked on node A after its refresh", got)
	}
}

// countingRevocations is a store that knows no revocation and counts the
// look-ups.
type countingRevocations struct{ lookups atomic.Int32 }

func (c *countingRevocations) Revoke(context.Context, string, time.Time) error { return nil }

func (c *countingRevocations) Revoked(context.Context, string) (bool, error) {
	c.lookups.Add(1)
	return false, nil
}

func TestAllocationsAskTheStoreOnlyPastTheChecksInMemoryAndOncePerInterval(t *testing.T) {
	st := &countingRevocations{}
	clock := &fakeClock{now: time.Now()}
	s := startTURN(t, func(c *Config) {
		c.Revocations = st
		c.Now = clock.Now
		c.MaxAllocationsPerMember = 3
	})
	u, p := mintFor("memberA", time.Hour)
	// A burst of allocations costs one look-up.
	allocate(t, turnClient(t, s, u, p))
	allocate(t, turnClient(t, s, u, p))
	if got := st.lookups.Load(); got != 1 {
		t.Errorf("two allocations within notRevokedFor asked the store %d times, want 1", got)
	}
	// Past notRevokedFor, the next allocation asks again.
	clock.Advance(notRevokedFor)
	allocate(t, turnClient(t, s, u, p))
	if got := st.lookups.Load(); got != 2 {
		t.Errorf("an allocation past notRevokedFor: %d look-ups, want 2", got)
	}
	// Past the member's cap, a flood of Allocates never reaches the store,
	// however old its answer.
	clock.Advance(notRevokedFor)
	for range 5 {
		if r, err := turnClient(t, s, u, p).Allocate(); err == nil {
			r.Close()
			t.Fatal("an allocation past the member's cap was let in")
		}
	}
	if got := st.lookups.Load(); got != 2 {
		t.Errorf("allocations refused by the member's cap asked the store: %d look-ups, want 2", got)
	}
}

// breakableRevocations is a store that knows no revocation, and fails
// once broken.
type breakableRevocations struct{ broken atomic.Bool }

var errStoreDown = errors.New("store down")

func (b *breakableRevocations) Revoke(context.Context, string, time.Time) error {
	if b.broken.Load() {
		return errStoreDown
	}
	return nil
}

func (b *breakableRevocations) Revoked(context.Context, string) (bool, error) {
	if b.broken.Load() {
		return false, errStoreDown
	}
	return false, nil
}

func TestRevokeWithTheStoreDownStillHoldsHere(t *testing.T) {
	st := &breakableRevocations{}
	s := startTURN(t, func(c *Config) { c.Revocations = st })
	u, p := mintFor("memberA", time.Hour)
	allocate(t, turnClient(t, s, u, p))
	st.broken.Store(true)
	if err := s.Revoke(t.Context(), "memberA"); !errors.Is(err, errStoreDown) {
		t.Errorf("Revoke with the store down: %v, want the store's error", err)
	}
	if got := s.Allocations("memberA"); got != 0 {
		t.Errorf("memberA holds %d relays after a Revoke the store failed", got)
	}
	if !s.isRevoked("memberA") {
		t.Error("the revocation the store failed to keep is not held in memory")
	}
}
