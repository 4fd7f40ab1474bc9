package signal

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// keyedBuckets holds one token bucket per key (a client address, a pair of
// members), made on first use. A bucket that has filled up again holds
// nothing a new one would not, so it is forgotten at the next sweep: the
// set holds only what was used within the time a bucket takes to refill,
// however many keys a client makes up.
type keyedBuckets struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	// sweepAt is the size at which the next new key first sweeps.
	sweepAt int
}

// minSweep is the fewest buckets a keyedBuckets sweeps at.
const minSweep = 64

func newKeyedBuckets(limit rate.Limit, burst int) *keyedBuckets {
	return &keyedBuckets{limit: limit, burst: burst, buckets: make(map[string]*rate.Limiter), sweepAt: minSweep}
}

// allow takes a token from key's bucket at now, and reports whether there
// was one. key is not kept unless its bucket is new.
func (k *keyedBuckets) allow(key []byte, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.buckets[string(key)]
	if b == nil {
		if len(k.buckets) >= k.sweepAt {
			k.sweep(now)
		}
		b = rate.NewLimiter(k.limit, k.burst)
		k.buckets[string(key)] = b
	}
	return b.AllowN(now, 1)
}

// sweep forgets the full buckets; the next sweep comes once the set has
// doubled, so that sweeping costs a constant per new key. The caller holds
// mu.
func (k *keyedBuckets) sweep(now time.Time) {
	for key, b := range k.buckets {
		if b.TokensAt(now) >= float64(k.burst) {
			delete(k.buckets, key)
		}
	}
	k.sweepAt = max(minSweep, 2*len(k.buckets))
}

// roomCount follows how many rooms exist, for the cap on rooms
// (Config.MaxRooms) and the rooms gauge, without listing the store on
// every create. A node counts the rooms when it starts, then follows its
// own creations and deletions; in a cluster the periodic recount
// (Server.recountRooms) takes in the others' too, so that each node can
// overshoot the cap by what the other nodes created since the last count,
// which the per-address creation rate bounds.
type roomCount struct {
	n     atomic.Int64
	gauge prometheus.Gauge
}

func (c *roomCount) set(n int) {
	c.n.Store(int64(n))
	c.gauge.Set(float64(n))
}

// reserve takes a place for a room about to be created, unless max rooms
// exist. The caller calls created or cancel once it knows.
func (c *roomCount) reserve(max int) bool {
	if c.n.Add(1) > int64(max) {
		c.n.Add(-1)
		return false
	}
	return true
}

func (c *roomCount) created() { c.gauge.Inc() }

func (c *roomCount) cancel() { c.n.Add(-1) }

// deleted counts a room gone (left by its last member, or discarded).
func (c *roomCount) deleted() {
	c.n.Add(-1)
	c.gauge.Dec()
}
