package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"lepeerchat/room"
	"lepeerchat/store"
	"lepeerchat/store/redisstore/redistest"
	"lepeerchat/store/storetest"
)

// sharedRedis starts a redis-server for the test and its subtests, which
// keep to their own key prefixes.
func sharedRedis(t *testing.T) *redistest.Server {
	t.Helper()
	return redistest.Start(t, false)
}

var prefixes atomic.Int64

// newPrefix returns a key prefix no other test uses.
func newPrefix() string { return fmt.Sprintf("t%d-%d:", time.Now().UnixNano(), prefixes.Add(1)) }

func open(t testing.TB, url, prefix string, opts ...func(*Options)) *Store {
	t.Helper()
	o := Options{Prefix: prefix}
	for _, f := range opts {
		f(&o)
	}
	s, err := Open(context.Background(), url, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := sharedRedis(t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, srv.URL(), newPrefix()) })
}

func TestPersistence(t *testing.T) {
	srv := sharedRedis(t)
	storetest.RunPersistent(t, func(t *testing.T, dir string) store.Store {
		// The same dir means the same state: here, the same prefix.
		return open(t, srv.URL(), "persist:"+dir+":")
	})
}

func TestOpenFailsWhenRedisIsDown(t *testing.T) {
	srv := redistest.Start(t, false)
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, srv.URL(), Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open of a stopped redis: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
	if _, err := Open(ctx, "http://example.invalid", Options{}); err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open of a malformed URL: %v, want a plain error", err)
	}
}

// TestIndexesFollowTheRooms checks what the cluster relies on: the discard
// index and the per-node connection index change with the rooms, in the
// same transaction.
func TestIndexesFollowTheRooms(t *testing.T) {
	srv := sharedRedis(t)
	p := newPrefix()
	s := open(t, srv.URL(), p)
	defer s.Close()
	ctx := t.Context()
	rdb := s.rdb
	at := time.Date(2030, 1, 2, 3, 4, 5, 600_000_001, time.UTC)
	r := &room.Room{ID: "r1", Members: map[string]*room.Member{}, Conns: map[string]string{"a/1": "m1", "b/2": "m2"}}
	set(t, s, r)
	wantSet(t, rdb, p+"conns:a", "r1")
	wantSet(t, rdb, p+"conns:b", "r1")
	wantSet(t, rdb, p+"nodes", "a", "b")
	if n, _ := rdb.ZCard(ctx, p+"discard").Result(); n != 0 {
		t.Fatalf("discard index has %d entries for a room with connections", n)
	}

	r.Conns = map[string]string{"b/2": "m2"}
	set(t, s, r)
	wantSet(t, rdb, p+"conns:a")
	wantSet(t, rdb, p+"conns:b", "r1")

	r.Conns = nil
	r.DiscardAt = at
	set(t, s, r)
	wantSet(t, rdb, p+"conns:b")
	score, err := rdb.ZScore(ctx, p+"discard", "r1").Result()
	if err != nil || int64(score) != at.UnixMilli()+1 {
		t.Fatalf("discard score = %v, %v; want %d (rounded up)", score, err, at.UnixMilli()+1)
	}

	r.DiscardAt = time.Time{}
	r.Conns = map[string]string{"c/1": "m1"}
	set(t, s, r)
	if n, _ := rdb.ZCard(ctx, p+"discard").Result(); n != 0 {
		t.Fatal("a stopped clock stays in the discard index")
	}
	wantSet(t, rdb, p+"conns:c", "r1")

	if _, err := s.Update(ctx, "r1", func(*room.Room) (*room.Room, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	wantSet(t, rdb, p+"conns:c")
	wantSet(t, rdb, p+"rooms")
}

func set(t *testing.T, s *Store, r *room.Room) {
	t.Helper()
	keep := r.Clone()
	if _, err := s.Update(t.Context(), r.ID, func(*room.Room) (*room.Room, error) { return keep, nil }); err != nil {
		t.Fatal(err)
	}
}

func wantSet(t *testing.T, rdb *redis.Client, key string, want ...string) {
	t.Helper()
	got, err := rdb.SMembers(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("%s = %q, want %q", key, got, want)
	}
}

// TestTwoStoresRaceForOneName is the duplicate-name race across nodes: two
// stores (two nodes) let a guest join under a name at once; exactly one
// succeeds.
func TestTwoStoresRaceForOneName(t *testing.T) {
	srv := sharedRedis(t)
	p := newPrefix()
	a, b := open(t, srv.URL(), p), open(t, srv.URL(), p)
	defer a.Close()
	defer b.Close()
	ctx := t.Context()
	now := time.Now()
	owner := room.Identity{ID: "owner", Secret: "s"}
	if _, err := a.Update(ctx, "r", func(*room.Room) (*room.Room, error) {
		r, err := room.Create("r", "Room", "Ann", owner, now)
		if err != nil {
			return nil, err
		}
		_, err = r.Invite("owner", room.Token{ID: "i", Token: "tok"}, 0, false, now)
		return r, err
	}); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		name := fmt.Sprintf("Bob%d", round)
		var wins, taken atomic.Int32
		var wg sync.WaitGroup
		for i, s := range []*Store{a, b, a, b} {
			wg.Go(func() {
				who := room.Identity{ID: fmt.Sprintf("m%d-%d", round, i), Secret: "x"}
				_, err := s.Update(ctx, "r", func(r *room.Room) (*room.Room, error) {
					_, err := r.Join("tok", name, who, now)
					return r, err
				})
				var re *room.Error
				switch {
				case err == nil:
					wins.Add(1)
				case errors.As(err, &re) && re.Code == room.CodeNameTaken:
					taken.Add(1)
				default:
					t.Errorf("join: %v", err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || taken.Load() != 3 {
			t.Fatalf("round %d: %d joins won and %d were refused name_taken; want 1 and 3", round, wins.Load(), taken.Load())
		}
	}
}

// TestBus checks delivery through Redis between two stores (two nodes).
func TestBus(t *testing.T) {
	srv := sharedRedis(t)
	p := newPrefix()
	a, b := open(t, srv.URL(), p), open(t, srv.URL(), p)
	defer a.Close()
	defer b.Close()
	ctx := t.Context()
	got := make(chan string, 16)
	cancel := b.Bus().Subscribe("r", "m", func(msg []byte) { got <- string(msg) })

	// Subscribe has returned: a message sent now is delivered.
	if ok, err := a.Bus().Send(ctx, "r", "m", []byte("one")); err != nil || !ok {
		t.Fatalf("Send = %v, %v; want delivered", ok, err)
	}
	wantMsg(t, got, "one")
	// Nobody listens to another member, or the same member in another
	// room, even when the ids are made to collide.
	for _, k := range [][2]string{{"r", "n"}, {"r2", "m"}, {"r:m", ""}, {"", "r:m"}} {
		if ok, err := a.Bus().Send(ctx, k[0], k[1], []byte("x")); err != nil || ok {
			t.Fatalf("Send to %q = %v, %v; want not delivered", k, ok, err)
		}
	}
	// Two local subscribers share one Redis subscription; both get it,
	// and the first leaving does not end the second's.
	got2 := make(chan string, 16)
	cancel2 := b.Bus().Subscribe("r", "m", func(msg []byte) { got2 <- string(msg) })
	a.Bus().Send(ctx, "r", "m", []byte("two"))
	wantMsg(t, got, "two")
	wantMsg(t, got2, "two")
	cancel()
	cancel() // twice is harmless
	a.Bus().Send(ctx, "r", "m", []byte("three"))
	wantMsg(t, got2, "three")
	cancel2()
	wantUndelivered(t, a, "r", "m")
	select {
	case m := <-got:
		t.Fatalf("cancelled subscriber got %q", m)
	case m := <-got2:
		t.Fatalf("cancelled subscriber got %q", m)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestBusSubscriberMayCancelItself is the rule a session relies on: deliver
// may cancel its own subscription.
func TestBusSubscriberMayCancelItself(t *testing.T) {
	srv := sharedRedis(t)
	s := open(t, srv.URL(), newPrefix())
	defer s.Close()
	done := make(chan struct{})
	var cancel func()
	var mu sync.Mutex
	mu.Lock()
	cancel = s.Bus().Subscribe("r", "m", func([]byte) {
		mu.Lock()
		defer mu.Unlock()
		cancel()
		close(done)
	})
	mu.Unlock()
	s.Bus().Send(t.Context(), "r", "m", []byte("bye"))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	wantUndelivered(t, s, "r", "m")
}

// wantUndelivered checks that Send to the member soon reports nobody: a
// cancelled subscription may count until its UNSUBSCRIBE reaches Redis.
func wantUndelivered(t *testing.T, s *Store, roomID, memberID string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		ok, err := s.Bus().Send(t.Context(), roomID, memberID, []byte("anyone?"))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Send still reports delivery 2 s after every subscription was cancelled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSubscribeConfirmedUnderChurn subscribes and cancels the same member
// over and over on one node while another sends: every send made after a
// Subscribe returned, and before its cancel, is delivered.
func TestSubscribeConfirmedUnderChurn(t *testing.T) {
	srv := sharedRedis(t)
	p := newPrefix()
	a, b := open(t, srv.URL(), p), open(t, srv.URL(), p)
	defer a.Close()
	defer b.Close()
	for i := range 100 {
		got := make(chan string, 1)
		cancel := b.Bus().Subscribe("r", "m", func(msg []byte) {
			select {
			case got <- string(msg):
			default:
			}
		})
		ok, err := a.Bus().Send(t.Context(), "r", "m", []byte("hi"))
		if err != nil || !ok {
			t.Fatalf("round %d: Send right after Subscribe = %v, %v", i, ok, err)
		}
		wantMsg(t, got, "hi")
		cancel()
	}
}

func wantMsg(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q within 5 s", want)
	}
}

// TestOutage stops Redis: every operation fails with ErrUnavailable within
// a bounded time and writes nothing; once Redis is back, the store and a
// subscription made before the outage work again by themselves.
func TestOutage(t *testing.T) {
	srv := redistest.Start(t, true)
	p := newPrefix()
	a, b := open(t, srv.URL(), p), open(t, srv.URL(), p)
	defer a.Close()
	defer b.Close()
	ctx := t.Context()
	set(t, a, storetest.SampleRoom("r1"))
	got := make(chan string, 16)
	cancel := b.Bus().Subscribe("r", "m", func(msg []byte) { got <- string(msg) })
	defer cancel()

	srv.Kill()
	for name, op := range map[string]func(ctx context.Context) error{
		"Get": func(ctx context.Context) error { _, err := a.Get(ctx, "r1"); return err },
		"IDs": func(ctx context.Context) error { _, err := a.IDs(ctx); return err },
		"Update": func(ctx context.Context) error {
			_, err := a.Update(ctx, "r1", func(r *room.Room) (*room.Room, error) { r.Name = "changed"; return r, nil })
			return err
		},
		"Send": func(ctx context.Context) error { _, err := a.Bus().Send(ctx, "r", "m", []byte("lost")); return err },
	} {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		err := op(ctx)
		cancel()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while redis is down: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s took %v to fail", name, d)
		}
	}
	// A subscription made during the outage returns without hanging.
	start := time.Now()
	b.Bus().Subscribe("r", "other", func([]byte) {})()
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Subscribe during the outage took %v", d)
	}

	srv.Restart()
	var r *room.Room
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r, err = a.Get(ctx, "r1"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Get after redis came back: %v", err)
	}
	if r.Name != storetest.SampleRoom("r1").Name {
		t.Fatalf("the update that failed during the outage was written: name %q", r.Name)
	}
	if _, err := a.Update(ctx, "r1", func(r *room.Room) (*room.Room, error) { r.Name = "after"; return r, nil }); err != nil {
		t.Fatalf("Update after redis came back: %v", err)
	}
	// The subscription comes back by itself.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := a.Bus().Send(ctx, "r", "m", []byte("back"))
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription not back within 10 s: %v, %v", ok, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantMsg(t, got, "back")
}

func TestAfterClose(t *testing.T) {
	srv := sharedRedis(t)
	s := open(t, srv.URL(), newPrefix())
	s.Bus().Subscribe("r", "m", func([]byte) {})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Bus().Send(t.Context(), "r", "m", nil); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Send after Close: %v", err)
	}
	s.Bus().Subscribe("r", "m", func([]byte) {})() // no panic, no hang
	if _, err := s.Join(t.Context(), "n", nil); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Join after Close: %v", err)
	}
}

// TestBusConcurrentSendsEachGetTheirAnswer sends from many goroutines at
// once, so that publishes go to Redis together in pipelines: each Send
// still reports its own delivery (half the members listen, half do not),
// every message arrives once, and one sender's messages arrive in order.
func TestBusConcurrentSendsEachGetTheirAnswer(t *testing.T) {
	srv := sharedRedis(t)
	p := newPrefix()
	a, b := open(t, srv.URL(), p), open(t, srv.URL(), p)
	defer a.Close()
	defer b.Close()
	const senders, each = 32, 50
	var mu sync.Mutex
	got := map[string][]int{}
	for i := range senders / 2 {
		member := fmt.Sprintf("m%d", i)
		b.Bus().Subscribe("r", member, func(msg []byte) {
			var n int
			fmt.Sscan(string(msg), &n)
			mu.Lock()
			got[member] = append(got[member], n)
			mu.Unlock()
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for i := range senders {
		wg.Go(func() {
			member := fmt.Sprintf("m%d", i)
			for n := range each {
				ok, err := a.Bus().Send(t.Context(), "r", member, []byte(fmt.Sprint(n)))
				if err != nil || ok != (i < senders/2) {
					errs <- fmt.Errorf("Send %d to %s = %v, %v; want delivered %v", n, member, ok, err, i < senders/2)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		complete := len(got) == senders/2
		for _, ns := range got {
			complete = complete && len(ns) == each
		}
		mu.Unlock()
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := make([]int, each)
	for n := range want {
		want[n] = n
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range senders / 2 {
		member := fmt.Sprintf("m%d", i)
		if !slices.Equal(got[member], want) {
			t.Errorf("%s got %v, want 0…%d in order", member, got[member], each-1)
		}
	}
}

// TestBusSendsUnderWayAtCloseReturn closes a store while many Sends
// are under way: each returns, delivered or refused as unavailable, none
// hangs.
func TestBusSendsUnderWayAtCloseReturn(t *testing.T) {
	srv := sharedRedis(t)
	s := open(t, srv.URL(), newPrefix())
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 64 {
		wg.Go(func() {
			<-start
			for range 20 {
				if _, err := s.Bus().Send(t.Context(), "r", fmt.Sprint("m", i), []byte("x")); err != nil {
					if !errors.Is(err, store.ErrUnavailable) {
						t.Errorf("Send after Close: %v, want ErrUnavailable", err)
					}
					return
				}
			}
		})
	}
	close(start)
	time.Sleep(time.Millisecond)
	s.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Sends still waiting 10 s after Close")
	}
}
