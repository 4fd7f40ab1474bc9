package store_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"lepeerchat/store"
)

var _ store.Bus = (*store.LocalBus)(nil)

// inbox records what a subscription receives.
type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (in *inbox) deliver(msg []byte) {
	in.mu.Lock()
	in.msgs = append(in.msgs, string(msg))
	in.mu.Unlock()
}

func (in *inbox) got() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

func wantInbox(t *testing.T, name string, in *inbox, want ...string) {
	t.Helper()
	if got := in.got(); !slices.Equal(got, want) {
		t.Errorf("%s received %q, want %q", name, got, want)
	}
}

func TestLocalBusDeliversToEverySubscriptionOfTheMemberOnly(t *testing.T) {
	b := store.NewLocalBus()
	var tab1, tab2, other, sameMemberOtherRoom inbox
	b.Subscribe("r1", "alice", tab1.deliver)
	b.Subscribe("r1", "alice", tab2.deliver)
	b.Subscribe("r1", "bob", other.deliver)
	b.Subscribe("r2", "alice", sameMemberOtherRoom.deliver)

	for _, msg := range []string{"one", "two"} {
		if delivered, err := b.Send(t.Context(), "r1", "alice", []byte(msg)); !delivered || err != nil {
			t.Fatalf("Send to a subscribed member = %v, %v; want true, nil", delivered, err)
		}
	}
	wantInbox(t, "alice's first tab", &tab1, "one", "two")
	wantInbox(t, "alice's second tab", &tab2, "one", "two")
	wantInbox(t, "bob in the same room", &other)
	wantInbox(t, "alice in another room", &sameMemberOtherRoom)
}

func TestLocalBusSendWithoutSubscriptionsIsNotAnError(t *testing.T) {
	b := store.NewLocalBus()
	if delivered, err := b.Send(t.Context(), "r1", "nobody", []byte("hello")); delivered || err != nil {
		t.Fatalf("Send to a member without subscriptions = %v, %v; want false, nil", delivered, err)
	}
	var in inbox
	b.Subscribe("r1", "alice", in.deliver)()
	if delivered, err := b.Send(t.Context(), "r1", "alice", []byte("hello")); delivered || err != nil {
		t.Fatalf("Send to a member whose only subscription was cancelled = %v, %v; want false, nil", delivered, err)
	}
	wantInbox(t, "a cancelled subscription", &in)
}

func TestLocalBusCancelStopsDelivery(t *testing.T) {
	b := store.NewLocalBus()
	var kept, cancelled inbox
	b.Subscribe("r1", "alice", kept.deliver)
	cancel := b.Subscribe("r1", "alice", cancelled.deliver)
	b.Send(t.Context(), "r1", "alice", []byte("before"))
	cancel()
	b.Send(t.Context(), "r1", "alice", []byte("after"))
	wantInbox(t, "the cancelled subscription", &cancelled, "before")
	wantInbox(t, "the other subscription", &kept, "before", "after")

	// Cancelling again changes nothing, and does not remove a later
	// subscription of the same member.
	var later inbox
	b.Subscribe("r1", "alice", later.deliver)
	cancel()
	cancel()
	b.Send(t.Context(), "r1", "alice", []byte("again"))
	wantInbox(t, "the cancelled subscription", &cancelled, "before")
	wantInbox(t, "the later subscription", &later, "again")
}

func TestLocalBusDeliversTheMessageUnchanged(t *testing.T) {
	b := store.NewLocalBus()
	var in inbox
	b.Subscribe("r1", "alice", in.deliver)
	msg := []byte("{\"type\":\"offer\",\"sdp\":\"v=0\\r\\n\"}\x00\xff")
	b.Send(t.Context(), "r1", "alice", msg)
	wantInbox(t, "alice", &in, string(msg))
}

func TestLocalBusDeliverMayCancelItsOwnSubscription(t *testing.T) {
	b := store.NewLocalBus()
	var in inbox
	var cancel func()
	cancel = b.Subscribe("r1", "alice", func(msg []byte) {
		in.deliver(msg)
		cancel()
	})
	b.Send(t.Context(), "r1", "alice", []byte("one"))
	b.Send(t.Context(), "r1", "alice", []byte("two"))
	wantInbox(t, "a subscription that cancels itself", &in, "one")
}

// TestLocalBusConcurrentUse subscribes, sends and cancels from many
// goroutines at once (run it with -race): every message sent while a
// subscription is live reaches it, and no message sent after its cancel
// has returned does.
func TestLocalBusConcurrentUse(t *testing.T) {
	b := store.NewLocalBus()
	const members, rounds = 8, 50
	var wg sync.WaitGroup
	for m := range members {
		member := fmt.Sprintf("m%d", m)
		// A steady subscriber that stays for the whole test counts every
		// message.
		var steady atomic.Int64
		cancelSteady := b.Subscribe("r1", member, func([]byte) { steady.Add(1) })
		var senders sync.WaitGroup
		senders.Go(func() {
			for i := range rounds {
				if _, err := b.Send(t.Context(), "r1", member, fmt.Appendf(nil, "%d", i)); err != nil {
					t.Errorf("Send: %v", err)
				}
			}
		})
		// Subscribers that come and go while messages flow. A message
		// sent by one of them after its cancel returned carries its tag
		// and must not reach it; messages of others sent earlier may.
		for g := range 4 {
			wg.Go(func() {
				for i := range rounds / 5 {
					tag := fmt.Sprintf("after-cancel-%d-%d", g, i)
					var own atomic.Int64
					cancel := b.Subscribe("r1", member, func(msg []byte) {
						if string(msg) == tag {
							t.Errorf("%s: message sent after cancel returned was delivered", tag)
						}
						if string(msg) == tag+"-before" {
							own.Add(1)
						}
					})
					if delivered, _ := b.Send(t.Context(), "r1", member, []byte(tag+"-before")); !delivered {
						t.Error("Send to a member with live subscriptions reported no delivery")
					}
					cancel()
					b.Send(t.Context(), "r1", member, []byte(tag))
					cancel()
					if own.Load() != 1 {
						t.Errorf("%s: own message delivered %d times, want 1", tag, own.Load())
					}
				}
			})
		}
		wg.Go(func() {
			senders.Wait()
			cancelSteady()
			if n := steady.Load(); n < rounds {
				t.Errorf("steady subscriber of %s received %d messages, want at least the %d sent to it", member, n, rounds)
			}
		})
	}
	wg.Wait()
}
