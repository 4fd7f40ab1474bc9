package store

import (
	"context"
	"sync"
)

// LocalBus is the Bus of a single server node: subscriptions live in a map
// and Send calls them directly.
type LocalBus struct {
	mu   sync.RWMutex
	next uint64
	subs map[busKey]map[uint64]func([]byte)
}

type busKey struct{ room, member string }

// NewLocalBus returns an empty LocalBus.
func NewLocalBus() *LocalBus {
	return &LocalBus{subs: make(map[busKey]map[uint64]func([]byte))}
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe(roomID, memberID string, deliver func([]byte)) (cancel func()) {
	k := busKey{roomID, memberID}
	b.mu.Lock()
	b.next++
	id := b.next
	if b.subs[k] == nil {
		b.subs[k] = make(map[uint64]func([]byte))
	}
	b.subs[k][id] = deliver
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs[k], id)
			if len(b.subs[k]) == 0 {
				delete(b.subs, k)
			}
			b.mu.Unlock()
		})
	}
}

// Send implements Bus. The subscriptions are called outside the lock, so
// that a deliver function may cancel its own subscription.
func (b *LocalBus) Send(_ context.Context, roomID, memberID string, msg []byte) (bool, error) {
	b.mu.RLock()
	subs := b.subs[busKey{roomID, memberID}]
	var one func([]byte)
	var many []func([]byte)
	for _, deliver := range subs {
		if one == nil {
			one = deliver
		} else {
			many = append(many, deliver)
		}
	}
	b.mu.RUnlock()
	if one == nil {
		return false, nil
	}
	one(msg)
	for _, deliver := range many {
		deliver(msg)
	}
	return true, nil
}
