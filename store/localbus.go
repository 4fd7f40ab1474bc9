package store

import (
	"context"
	"slices"
	"sync"
)

// LocalBus is the Bus of a single server node: subscriptions live in a map
// and Send calls them directly.
//
// A member's subscriptions (one per connection, rarely more) are a slice
// that is replaced, never changed in place, when one comes or goes: Send
// takes it under a read lock and calls it after letting go.
type LocalBus struct {
	mu   sync.RWMutex
	next uint64
	subs map[busKey][]subscription
}

type busKey struct{ room, member string }

type subscription struct {
	id      uint64
	deliver func([]byte)
}

// NewLocalBus returns an empty LocalBus.
func NewLocalBus() *LocalBus {
	return &LocalBus{subs: make(map[busKey][]subscription)}
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe(roomID, memberID string, deliver func([]byte)) (cancel func()) {
	k := busKey{roomID, memberID}
	b.mu.Lock()
	b.next++
	id := b.next
	b.subs[k] = append(slices.Clip(b.subs[k]), subscription{id, deliver})
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			rest := slices.DeleteFunc(slices.Clone(b.subs[k]), func(s subscription) bool { return s.id == id })
			if len(rest) == 0 {
				delete(b.subs, k)
			} else {
				b.subs[k] = rest
			}
		})
	}
}

// Send implements Bus. The subscriptions are called outside the lock, so
// that a deliver function may cancel its own subscription.
func (b *LocalBus) Send(_ context.Context, roomID, memberID string, msg []byte) (bool, error) {
	b.mu.RLock()
	subs := b.subs[busKey{roomID, memberID}]
	b.mu.RUnlock()
	for _, s := range subs {
		s.deliver(msg)
	}
	return len(subs) > 0, nil
}
