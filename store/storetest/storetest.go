// Package storetest is the conformance suite that every store.Store passes.
//
// Each rule of the store.Store contract is one named subtest, so that a
// failing implementation reads as the rule it breaks. Run the suite from the
// implementation's own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) })
//	}
//
// Run it with -race: several rules are about concurrent updates.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"lepeerchat/room"
	"lepeerchat/store"
)

// Run checks that the stores returned by open follow the store.Store
// contract. open is called once per subtest and must return a new, empty
// store; Run closes it when the subtest ends, so open must not.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	newStore := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"Get of a missing room is ErrNotFound", testGetMissing},
		{"Update creates a room", testCreate},
		{"Update changes a room", testChange},
		{"Update returning nil deletes the room", testDelete},
		{"Update returning nil for a missing room stores nothing", testDeleteMissing},
		{"fn receives nil for an absent room", testFnNilForAbsent},
		{"fn receives the current room", testFnReceivesCurrent},
		{"fn error is returned as is and nothing is written", testFnError},
		{"fn error for an absent room creates nothing", testFnErrorAbsent},
		{"mutating the copy passed to fn and then failing leaves the room unchanged", testFnCopyIsPrivate},
		{"mutating a room returned by Get does not change the store", testGetReturnsCopy},
		{"mutating a room returned by Update does not change the store", testUpdateReturnsCopy},
		{"a new state with another id is refused and nothing is written", testWrongID},
		{"Update with an ended context does not call fn and writes nothing", testCancelledUpdate},
		{"concurrent updates to one room never lose a write", testConcurrentOneRoom},
		{"concurrent updates to different rooms never lose a write", testConcurrentManyRooms},
		{"IDs of an empty store is empty", testIDsEmpty},
		{"IDs lists exactly the stored rooms", testIDs},
		{"time fields and byte slices survive a round trip", testRoundTrip},
		{"an empty room survives a round trip", testMinimalRoom},
		{"operations after Close fail with ErrUnavailable", testAfterClose},
		{"a member never revoked is not revoked", testNotRevoked},
		{"a revoked member is revoked until its end, and only that member", testRevoked},
		{"a revocation whose end has passed does not hold", testRevokedInThePast},
		{"a revocation with an earlier end does not shorten a running one", testRevokeNotShortened},
		{"a revocation after an ended one holds", testRevokeAgain},
		{"a revoke with an ended context fails", testCancelledRevoke},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newStore(t))
		})
	}
}

// RunPersistent checks that a store keeps every room across Close and a new
// open: open(t, dir) must return a store over the state kept in dir (a new,
// empty directory for each subtest), which is empty the first time. It is
// called twice per subtest with the same dir; RunPersistent closes each
// store it gets.
func RunPersistent(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	reopen := func(t *testing.T, s store.Store, dir string) store.Store {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		s = open(t, dir)
		t.Cleanup(func() { s.Close() })
		return s
	}
	tests := []struct {
		name string
		test func(t *testing.T, s store.Store, reopen func(store.Store) store.Store)
	}{
		{"every room survives a reopen identical", testPersistRooms},
		{"a deleted room stays deleted after a reopen", testPersistDelete},
		{"a failed update leaves nothing behind after a reopen", testPersistFailed},
		{"the reopened store accepts updates", testPersistUpdateAfterReopen},
		{"a revocation survives a reopen", testPersistRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := open(t, dir)
			t.Cleanup(func() { s.Close() })
			tt.test(t, s, func(s store.Store) store.Store { return reopen(t, s, dir) })
		})
	}
}

// ctx returns the context of the test, which ends when the test does.
func ctx(t *testing.T) context.Context { return t.Context() }

// base is a fixed instant with nanoseconds and a non-UTC zone, so that a
// store that truncates or drops either is caught.
var base = time.Date(2025, 3, 30, 1, 59, 58, 123456789, time.FixedZone("CET", 3600))

// SampleRoom returns a full room with id: an owner and two other members, three
// invitations in different states, two live connections, a lock and a
// discard time. Every time field has nanoseconds and a zone; every byte
// slice holds bytes that are not valid UTF-8.
func SampleRoom(id string) *room.Room {
	hash := func(seed byte) []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = seed + byte(i*7) | 0x80
		}
		return b
	}
	return &room.Room{
		ID:      id,
		Name:    "Salle ☕ " + id,
		Owner:   "m-owner",
		Created: base,
		Locked:  true,
		Members: map[string]*room.Member{
			"m-owner": {ID: "m-owner", Name: "Zoë", SecretHash: hash(1), Joined: base},
			"m-2":     {ID: "m-2", Name: "李雷", SecretHash: hash(2), Joined: base.Add(time.Minute + 1)},
			"m-3":     {ID: "m-3", Name: "🦊", SecretHash: hash(3), Joined: base.Add(time.Hour).UTC()},
		},
		Invites: map[string]*room.Invite{
			"i-1": {ID: "i-1", TokenHash: hash(4), Created: base, Expires: base.Add(room.DefaultInviteTTL)},
			"i-2": {ID: "i-2", TokenHash: hash(5), Created: base, Expires: base.Add(time.Hour), SingleUse: true, Used: true},
			"i-3": {ID: "i-3", TokenHash: hash(6), Created: base, Expires: base.Add(2 * time.Hour), Revoked: true},
		},
		Conns: map[string]string{
			room.Conn{Node: "node-a", ID: "1"}.Key(): "m-owner",
			room.Conn{Node: "node-b", ID: "7"}.Key(): "m-2",
		},
		DiscardAt: base.Add(30*time.Minute + 999),
	}
}

// put stores r, failing the test if it cannot.
func put(t *testing.T, s store.Store, r *room.Room) {
	t.Helper()
	keep := r.Clone()
	_, err := s.Update(ctx(t), r.ID, func(*room.Room) (*room.Room, error) { return keep, nil })
	if err != nil {
		t.Fatalf("Update(%q) storing a room: %v", r.ID, err)
	}
}

// mustGet returns the stored room id, failing the test if it cannot.
func mustGet(t *testing.T, s store.Store, id string) *room.Room {
	t.Helper()
	r, err := s.Get(ctx(t), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	if r == nil {
		t.Fatalf("Get(%q) returned a nil room and no error", id)
	}
	return r
}

// wantMissing fails the test unless Get of id is ErrNotFound.
func wantMissing(t *testing.T, s store.Store, id string) {
	t.Helper()
	r, err := s.Get(ctx(t), id)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %v, %v; want ErrNotFound", id, r, err)
	}
}

// wantRoom fails the test unless got is the same room as want: same fields,
// times equal as time.Equal compares them, nil and empty maps and byte
// slices alike.
func wantRoom(t *testing.T, what string, got, want *room.Room) {
	t.Helper()
	if g, w := normalise(got), normalise(want); !reflect.DeepEqual(g, w) {
		gj, _ := json.MarshalIndent(g, "", "  ")
		wj, _ := json.MarshalIndent(w, "", "  ")
		t.Fatalf("%s:\ngot  %s\nwant %s", what, gj, wj)
	}
}

// wantStored fails the test unless the stored room want.ID is want.
func wantStored(t *testing.T, s store.Store, want *room.Room) {
	t.Helper()
	wantRoom(t, fmt.Sprintf("Get(%q)", want.ID), mustGet(t, s, want.ID), want)
}

// normalise returns a copy of r in which each time is in UTC without a
// monotonic reading, and nil maps and byte slices are empty, so that two
// rooms that mean the same are reflect.DeepEqual.
func normalise(r *room.Room) *room.Room {
	if r == nil {
		return nil
	}
	tm := func(t time.Time) time.Time { return t.UTC().Round(0) }
	bs := func(b []byte) []byte {
		if b == nil {
			return []byte{}
		}
		return slices.Clone(b)
	}
	c := r.Clone()
	c.Created, c.DiscardAt = tm(c.Created), tm(c.DiscardAt)
	if c.Members == nil {
		c.Members = map[string]*room.Member{}
	}
	for _, m := range c.Members {
		m.SecretHash, m.Joined = bs(m.SecretHash), tm(m.Joined)
	}
	if c.Invites == nil {
		c.Invites = map[string]*room.Invite{}
	}
	for _, in := range c.Invites {
		in.TokenHash, in.Created, in.Expires = bs(in.TokenHash), tm(in.Created), tm(in.Expires)
	}
	if c.Conns == nil {
		c.Conns = map[string]string{}
	}
	return c
}

// addMember returns an UpdateFunc adding a member named name to an existing
// room.
func addMember(name string) store.UpdateFunc {
	return func(r *room.Room) (*room.Room, error) {
		if r == nil {
			return nil, errors.New("room does not exist")
		}
		r.Members["m-"+name] = &room.Member{ID: "m-" + name, Name: name, SecretHash: []byte(name), Joined: base}
		return r, nil
	}
}

func testGetMissing(t *testing.T, s store.Store) {
	wantMissing(t, s, "nowhere")
	put(t, s, SampleRoom("here"))
	wantMissing(t, s, "nowhere")
}

func testCreate(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	got, err := s.Update(ctx(t), "r1", func(*room.Room) (*room.Room, error) { return want.Clone(), nil })
	if err != nil {
		t.Fatalf("Update creating r1: %v", err)
	}
	wantRoom(t, "Update result", got, want)
	wantStored(t, s, want)
}

func testChange(t *testing.T, s store.Store) {
	put(t, s, SampleRoom("r1"))
	want := SampleRoom("r1")
	want.Locked = false
	want.DiscardAt = time.Time{}
	delete(want.Members, "m-3")
	want.Conns["node-a/2"] = "m-2"
	got, err := s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) {
		r.Locked = false
		r.DiscardAt = time.Time{}
		delete(r.Members, "m-3")
		r.Conns["node-a/2"] = "m-2"
		return r, nil
	})
	if err != nil {
		t.Fatalf("Update changing r1: %v", err)
	}
	wantRoom(t, "Update result", got, want)
	wantStored(t, s, want)
}

func testDelete(t *testing.T, s store.Store) {
	put(t, s, SampleRoom("r1"))
	put(t, s, SampleRoom("r2"))
	got, err := s.Update(ctx(t), "r1", func(*room.Room) (*room.Room, error) { return nil, nil })
	if err != nil || got != nil {
		t.Fatalf("Update deleting r1 = %v, %v; want nil, nil", got, err)
	}
	wantMissing(t, s, "r1")
	wantStored(t, s, SampleRoom("r2"))
	var called *room.Room
	if _, err := s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) { called = r; return nil, nil }); err != nil {
		t.Fatalf("Update of the deleted r1: %v", err)
	}
	if called != nil {
		t.Fatalf("fn received %v for a deleted room, want nil", called)
	}
}

func testDeleteMissing(t *testing.T, s store.Store) {
	got, err := s.Update(ctx(t), "r1", func(*room.Room) (*room.Room, error) { return nil, nil })
	if err != nil || got != nil {
		t.Fatalf("Update returning nil for a missing room = %v, %v; want nil, nil", got, err)
	}
	wantMissing(t, s, "r1")
	if ids, err := s.IDs(ctx(t)); err != nil || len(ids) != 0 {
		t.Fatalf("IDs = %q, %v; want none", ids, err)
	}
}

func testFnNilForAbsent(t *testing.T, s store.Store) {
	put(t, s, SampleRoom("other"))
	calls := 0
	_, err := s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) {
		calls++
		if r != nil {
			t.Errorf("fn received %+v for an absent room, want nil", r)
		}
		return SampleRoom("r1"), nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if calls == 0 {
		t.Fatal("fn was not called")
	}
}

func testFnReceivesCurrent(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	put(t, s, want)
	var got *room.Room
	_, err := s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) {
		got = r.Clone()
		return r, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantRoom(t, "fn's argument", got, want)
}

func testFnError(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	put(t, s, want)
	refusal := &refusalError{code: "test-refusal"}
	wrapped := fmt.Errorf("join: %w", refusal)
	got, err := s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) {
		r.Name = "changed"
		return r, wrapped
	})
	if err != wrapped {
		t.Errorf("Update error = %v; want fn's error %v, unchanged", err, wrapped)
	}
	var re *refusalError
	if !errors.As(err, &re) || re != refusal {
		t.Errorf("errors.As(Update error, *refusalError) lost the refusal: %v", err)
	}
	if errors.Is(err, store.ErrUnavailable) {
		t.Errorf("fn's refusal reported as ErrUnavailable: %v", err)
	}
	if got != nil {
		t.Errorf("Update returned room %+v with an error; want nil", got)
	}
	wantStored(t, s, want)
}

// refusalError stands for the typed errors of the room rules.
type refusalError struct{ code string }

func (e *refusalError) Error() string { return "refused: " + e.code }

func testFnErrorAbsent(t *testing.T, s store.Store) {
	sentinel := errors.New("refused")
	_, err := s.Update(ctx(t), "r1", func(*room.Room) (*room.Room, error) { return SampleRoom("r1"), sentinel })
	if !errors.Is(err, sentinel) {
		t.Fatalf("Update error = %v; want %v", err, sentinel)
	}
	wantMissing(t, s, "r1")
}

func testFnCopyIsPrivate(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	put(t, s, want)
	sentinel := errors.New("refused")
	_, err := s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) {
		vandalise(r)
		return nil, sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("Update error = %v; want %v", err, sentinel)
	}
	wantStored(t, s, want)
}

func testGetReturnsCopy(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	put(t, s, want)
	vandalise(mustGet(t, s, "r1"))
	wantStored(t, s, want)
}

func testUpdateReturnsCopy(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	got, err := s.Update(ctx(t), "r1", func(*room.Room) (*room.Room, error) { return want.Clone(), nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	vandalise(got)
	wantStored(t, s, want)
	got, err = s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) { return r, nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	vandalise(got)
	wantStored(t, s, want)
}

// vandalise changes every part of r in place: fields, maps, the structs
// they point to and the bytes of their slices.
func vandalise(r *room.Room) {
	r.Name, r.Owner, r.Locked = "vandalised", "m-2", !r.Locked
	r.Created = r.Created.Add(time.Hour)
	r.DiscardAt = time.Time{}
	for _, m := range r.Members {
		m.Name = "x"
		m.Joined = time.Time{}
		for i := range m.SecretHash {
			m.SecretHash[i] = 0
		}
	}
	r.Members["m-new"] = &room.Member{ID: "m-new", Name: "new"}
	delete(r.Members, "m-3")
	for _, in := range r.Invites {
		in.Revoked = !in.Revoked
		for i := range in.TokenHash {
			in.TokenHash[i] = 0
		}
	}
	delete(r.Invites, "i-1")
	for k := range r.Conns {
		r.Conns[k] = "m-new"
	}
	r.Conns["node-z/1"] = "m-new"
}

func testWrongID(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	put(t, s, want)
	got, err := s.Update(ctx(t), "r1", func(*room.Room) (*room.Room, error) { return SampleRoom("r2"), nil })
	if err == nil {
		t.Fatalf("Update of r1 storing a room with id r2 = %v, nil; want an error", got)
	}
	wantStored(t, s, want)
	wantMissing(t, s, "r2")
	_, err = s.Update(ctx(t), "r3", func(*room.Room) (*room.Room, error) { return SampleRoom("r2"), nil })
	if err == nil {
		t.Fatal("Update of absent r3 storing a room with id r2 succeeded; want an error")
	}
	wantMissing(t, s, "r2")
	wantMissing(t, s, "r3")
}

func testCancelledUpdate(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	put(t, s, want)
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	called := false
	_, err := s.Update(c, "r1", func(r *room.Room) (*room.Room, error) {
		called = true
		r.Name = "changed"
		return r, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled context: error %v, want context.Canceled", err)
	}
	if called {
		t.Error("Update with a cancelled context called fn")
	}
	wantStored(t, s, want)
}

func testConcurrentOneRoom(t *testing.T, s store.Store) {
	const n = 50
	r := SampleRoom("r1")
	put(t, s, r)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := s.Update(ctx(t), "r1", addMember(fmt.Sprintf("g%02d", i))); err != nil {
				t.Errorf("Update adding member %d: %v", i, err)
			}
		})
	}
	// Readers race the writers: each must see a whole room.
	for range 4 {
		wg.Go(func() {
			for range 20 {
				got, err := s.Get(ctx(t), "r1")
				if err != nil {
					t.Errorf("Get during updates: %v", err)
					return
				}
				if len(got.Members) < len(r.Members) {
					t.Errorf("Get during updates saw %d members, fewer than the %d at the start", len(got.Members), len(r.Members))
					return
				}
			}
		})
	}
	wg.Wait()
	got := mustGet(t, s, "r1")
	for i := range n {
		if id := fmt.Sprintf("m-g%02d", i); got.Members[id] == nil {
			t.Errorf("member %s added by a concurrent Update is missing", id)
		}
	}
	if want := len(r.Members) + n; len(got.Members) != want {
		t.Errorf("room has %d members, want %d", len(got.Members), want)
	}
}

func testConcurrentManyRooms(t *testing.T, s store.Store) {
	const rooms, perRoom = 10, 10
	for i := range rooms {
		put(t, s, SampleRoom(fmt.Sprintf("r%d", i)))
	}
	var wg sync.WaitGroup
	for i := range rooms {
		for j := range perRoom {
			wg.Go(func() {
				if _, err := s.Update(ctx(t), fmt.Sprintf("r%d", i), addMember(fmt.Sprintf("g%d", j))); err != nil {
					t.Errorf("Update of r%d adding member %d: %v", i, j, err)
				}
			})
		}
	}
	wg.Wait()
	for i := range rooms {
		id := fmt.Sprintf("r%d", i)
		got := mustGet(t, s, id)
		if want := len(SampleRoom(id).Members) + perRoom; len(got.Members) != want {
			t.Errorf("room %s has %d members, want %d", id, len(got.Members), want)
		}
		if got.Members["m-g0"] == nil || got.Members[fmt.Sprintf("m-g%d", perRoom-1)] == nil {
			t.Errorf("room %s lacks members added concurrently", id)
		}
	}
}

func testIDsEmpty(t *testing.T, s store.Store) {
	ids, err := s.IDs(ctx(t))
	if err != nil || len(ids) != 0 {
		t.Fatalf("IDs of an empty store = %q, %v; want none", ids, err)
	}
}

func testIDs(t *testing.T, s store.Store) {
	for _, id := range []string{"b", "a", "c", "Ä-é", "d"} {
		put(t, s, SampleRoom(id))
	}
	for _, id := range []string{"c", "d"} {
		if _, err := s.Update(ctx(t), id, func(*room.Room) (*room.Room, error) { return nil, nil }); err != nil {
			t.Fatalf("Update deleting %q: %v", id, err)
		}
	}
	// A refused creation adds no id.
	s.Update(ctx(t), "e", func(*room.Room) (*room.Room, error) { return nil, errors.New("refused") })
	ids, err := s.IDs(ctx(t))
	if err != nil {
		t.Fatalf("IDs: %v", err)
	}
	slices.Sort(ids)
	if want := []string{"a", "b", "Ä-é"}; !slices.Equal(ids, want) {
		t.Fatalf("IDs = %q, want %q in any order", ids, want)
	}
}

func testRoundTrip(t *testing.T, s store.Store) {
	want := SampleRoom("r1")
	put(t, s, want)
	got := mustGet(t, s, "r1")
	wantRoom(t, "Get", got, want)
	// The same, spelled out, for the fields most often mangled.
	if !got.Created.Equal(want.Created) || !got.DiscardAt.Equal(want.DiscardAt) {
		t.Errorf("times changed: Created %v, DiscardAt %v; want %v, %v", got.Created, got.DiscardAt, want.Created, want.DiscardAt)
	}
	for id, m := range want.Members {
		g := got.Members[id]
		if g == nil || !g.Joined.Equal(m.Joined) || !slices.Equal(g.SecretHash, m.SecretHash) {
			t.Errorf("member %s = %+v, want %+v", id, g, m)
		}
	}
	for id, in := range want.Invites {
		g := got.Invites[id]
		if g == nil || !g.Expires.Equal(in.Expires) || !g.Created.Equal(in.Created) || !slices.Equal(g.TokenHash, in.TokenHash) {
			t.Errorf("invite %s = %+v, want %+v", id, g, in)
		}
	}
	if got.DiscardAt.Nanosecond() != want.DiscardAt.Nanosecond() {
		t.Errorf("DiscardAt lost its nanoseconds: %v", got.DiscardAt)
	}
}

func testMinimalRoom(t *testing.T, s store.Store) {
	want := &room.Room{ID: "r1"}
	put(t, s, want)
	got := mustGet(t, s, "r1")
	wantRoom(t, "Get", got, want)
	if !got.DiscardAt.IsZero() || !got.Created.IsZero() {
		t.Errorf("zero times came back as %v, %v", got.Created, got.DiscardAt)
	}
	// The room must be usable by the rules, which add to its maps.
	if _, err := s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) {
		if r == nil {
			return nil, errors.New("room vanished")
		}
		if r.Members == nil {
			r.Members = map[string]*room.Member{}
		}
		r.Members["m-1"] = &room.Member{ID: "m-1", Name: "one"}
		return r, nil
	}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := mustGet(t, s, "r1"); got.Members["m-1"] == nil {
		t.Fatalf("member added to an empty room is missing: %+v", got)
	}
}

func testAfterClose(t *testing.T, s store.Store) {
	put(t, s, SampleRoom("r1"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Get(ctx(t), "r1"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get after Close: error %v, want ErrUnavailable", err)
	}
	called := false
	_, err := s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) { called = true; return r, nil })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Update after Close: error %v, want ErrUnavailable", err)
	}
	if called {
		t.Error("Update after Close called fn")
	}
	if _, err := s.IDs(ctx(t)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("IDs after Close: error %v, want ErrUnavailable", err)
	}
	if err := s.Revoke(ctx(t), "m-1", time.Now().Add(time.Hour)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Revoke after Close: error %v, want ErrUnavailable", err)
	}
	if _, err := s.Revoked(ctx(t), "m-1"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Revoked after Close: error %v, want ErrUnavailable", err)
	}
}

// revoke records a revocation of member until until, failing the test if
// it cannot.
func revoke(t *testing.T, s store.Store, member string, until time.Time) {
	t.Helper()
	if err := s.Revoke(ctx(t), member, until); err != nil {
		t.Fatalf("Revoke(%q, %v): %v", member, until, err)
	}
}

// wantRevoked checks whether member is revoked now.
func wantRevoked(t *testing.T, s store.Store, member string, want bool) {
	t.Helper()
	got, err := s.Revoked(ctx(t), member)
	if err != nil {
		t.Fatalf("Revoked(%q): %v", member, err)
	}
	if got != want {
		t.Errorf("Revoked(%q) = %v, want %v", member, got, want)
	}
}

func testNotRevoked(t *testing.T, s store.Store) {
	wantRevoked(t, s, "m-1", false)
}

func testRevoked(t *testing.T, s store.Store) {
	revoke(t, s, "m-1", time.Now().Add(time.Hour))
	wantRevoked(t, s, "m-1", true)
	wantRevoked(t, s, "m-2", false)
	// A member id holding the key syntax of a store is one member.
	revoke(t, s, "m:3/ä", time.Now().Add(time.Hour))
	wantRevoked(t, s, "m:3/ä", true)
	wantRevoked(t, s, "m:3", false)
}

func testRevokedInThePast(t *testing.T, s store.Store) {
	revoke(t, s, "m-1", time.Now().Add(-time.Second))
	wantRevoked(t, s, "m-1", false)
}

func testRevokeNotShortened(t *testing.T, s store.Store) {
	revoke(t, s, "m-1", time.Now().Add(time.Hour))
	revoke(t, s, "m-1", time.Now().Add(-time.Second))
	wantRevoked(t, s, "m-1", true)
}

func testRevokeAgain(t *testing.T, s store.Store) {
	revoke(t, s, "m-1", time.Now().Add(-time.Second))
	revoke(t, s, "m-1", time.Now().Add(time.Hour))
	wantRevoked(t, s, "m-1", true)
}

func testCancelledRevoke(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	if err := s.Revoke(c, "m-1", time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("Revoke with an ended context: error %v, want context.Canceled", err)
	}
	wantRevoked(t, s, "m-1", false)
}

func testPersistRooms(t *testing.T, s store.Store, reopen func(store.Store) store.Store) {
	want := []*room.Room{SampleRoom("r1"), SampleRoom("r2"), {ID: "bare"}}
	want[1].Locked = false
	want[1].DiscardAt = time.Time{}
	want[1].Conns = nil
	for _, r := range want {
		put(t, s, r)
	}
	// A room changed several times persists in its last state.
	for i := range 3 {
		if _, err := s.Update(ctx(t), "r1", addMember(fmt.Sprintf("late%d", i))); err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	for i := range 3 {
		name := fmt.Sprintf("late%d", i)
		want[0].Members["m-"+name] = &room.Member{ID: "m-" + name, Name: name, SecretHash: []byte(name), Joined: base}
	}
	s = reopen(s)
	for _, r := range want {
		wantStored(t, s, r)
	}
	ids, err := s.IDs(ctx(t))
	if err != nil {
		t.Fatalf("IDs: %v", err)
	}
	slices.Sort(ids)
	if w := []string{"bare", "r1", "r2"}; !slices.Equal(ids, w) {
		t.Fatalf("IDs after reopen = %q, want %q", ids, w)
	}
}

func testPersistDelete(t *testing.T, s store.Store, reopen func(store.Store) store.Store) {
	put(t, s, SampleRoom("r1"))
	put(t, s, SampleRoom("r2"))
	if _, err := s.Update(ctx(t), "r1", func(*room.Room) (*room.Room, error) { return nil, nil }); err != nil {
		t.Fatalf("Update deleting r1: %v", err)
	}
	s = reopen(s)
	wantMissing(t, s, "r1")
	wantStored(t, s, SampleRoom("r2"))
}

func testPersistFailed(t *testing.T, s store.Store, reopen func(store.Store) store.Store) {
	put(t, s, SampleRoom("r1"))
	sentinel := errors.New("refused")
	s.Update(ctx(t), "r1", func(r *room.Room) (*room.Room, error) { r.Name = "changed"; return r, sentinel })
	s.Update(ctx(t), "r2", func(*room.Room) (*room.Room, error) { return SampleRoom("r2"), sentinel })
	s = reopen(s)
	wantStored(t, s, SampleRoom("r1"))
	wantMissing(t, s, "r2")
}

func testPersistRevoked(t *testing.T, s store.Store, reopen func(store.Store) store.Store) {
	revoke(t, s, "m-1", time.Now().Add(time.Hour))
	revoke(t, s, "m-2", time.Now().Add(-time.Second))
	s = reopen(s)
	wantRevoked(t, s, "m-1", true)
	wantRevoked(t, s, "m-2", false)
}

func testPersistUpdateAfterReopen(t *testing.T, s store.Store, reopen func(store.Store) store.Store) {
	put(t, s, SampleRoom("r1"))
	s = reopen(s)
	if _, err := s.Update(ctx(t), "r1", addMember("after")); err != nil {
		t.Fatalf("Update after reopen: %v", err)
	}
	put(t, s, SampleRoom("r2"))
	s = reopen(s)
	if got := mustGet(t, s, "r1"); got.Members["m-after"] == nil {
		t.Fatalf("member added after a reopen is missing after the next: %+v", got.Members)
	}
	wantStored(t, s, SampleRoom("r2"))
}
