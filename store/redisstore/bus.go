package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"lepeerchat/store"
)

// Bus is the store.Bus of a cluster: a message for a member is published on
// the member's own channel, to which the node holding the member's
// connection is subscribed.
//
// A channel per member, rather than one per node with a table of who is
// where, makes Redis itself the table: PUBLISH answers how many nodes are
// subscribed, which is exactly Send's "delivered", with no second lookup,
// no table to keep in step with the connections, and nothing left behind
// by a node that dies (Redis drops its subscriptions with its connection).
// Each node holds all its members' channels on one subscription
// connection, subscribing a channel when its first local subscriber comes
// and unsubscribing it when its last goes.
type Bus struct{ s *Store }

var _ store.Bus = (*Bus)(nil)

// Bus returns the store's bus. It shares the store's connections; Close
// closes both.
func (s *Store) Bus() *Bus { return &Bus{s} }

// Subscribe implements store.Bus. It returns once Redis has confirmed the
// subscription, so that a message published after it returns is
// delivered; if Redis cannot be reached it returns without waiting, and
// the subscription is made when Redis is back.
func (b *Bus) Subscribe(roomID, memberID string, deliver func([]byte)) (cancel func()) {
	h := b.s.hub()
	if h == nil {
		return func() {}
	}
	return h.subscribe(b.s.k.member(roomID, memberID), deliver)
}

// Send implements store.Bus: it publishes msg on the member's channel and
// reports whether any node was subscribed to it when Redis published it. A
// subscription cancelled just before may still count, for as long as its
// UNSUBSCRIBE takes to reach Redis, though nothing is delivered to it.
//
// Publishes that come together are sent to Redis in one pipeline (see
// publisher).
func (b *Bus) Send(ctx context.Context, roomID, memberID string, msg []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, unavailable("publish", err)
	}
	n, err := b.s.pub.publish(b.s.k.member(roomID, memberID), msg)
	if err != nil {
		return false, unavailable("publish", err)
	}
	return n > 0, nil
}

// Tuning of the subscription connection.
const (
	// hubPing is how often the subscription connection is checked.
	hubPing = time.Second
	// hubSilence is how long it may stay silent, pings unanswered, before
	// it is taken for dead and replaced.
	hubSilence = 5 * time.Second
	// confirmWait bounds the wait for Redis to confirm a subscription.
	confirmWait = 3 * time.Second
	// hubOpTimeout bounds one SUBSCRIBE, UNSUBSCRIBE or PING.
	hubOpTimeout = 2 * time.Second
)

// hub is a node's one subscription connection and the table of its local
// subscribers. One goroutine receives from Redis and calls the subscribers
// of each message's channel; another pings, so that a connection gone
// silent is noticed and replaced. go-redis reconnects and subscribes again
// to every channel by itself.
type hub struct {
	ps     *redis.PubSub
	logger *slog.Logger

	// opMu orders SUBSCRIBE and UNSUBSCRIBE with the changes of the
	// table that call for them.
	opMu sync.Mutex

	mu     sync.RWMutex // guards the fields below
	chans  map[string]*channel
	next   uint64
	pings  map[string]*channel // PING payload → the channel it confirms
	closed bool

	// up tells whether the connection works, as far as is known. Only
	// the receiving goroutine changes it.
	up atomic.Bool

	// reconnected receives a token each time the connection comes back
	// after a failure: messages may have been missed meanwhile.
	reconnected chan struct{}

	token atomic.Uint64
	stop  chan struct{}
	wg    sync.WaitGroup

	scratch []func([]byte) // the receiver's buffer of subscribers
}

// channel is one subscribed channel: its local subscribers, and ready,
// closed when Redis has confirmed the subscription (or the wait is over).
type channel struct {
	subs      map[uint64]func([]byte)
	ready     chan struct{}
	readyOnce sync.Once
}

func (c *channel) confirm() { c.readyOnce.Do(func() { close(c.ready) }) }

func newHub(rdb *redis.Client, log *slog.Logger) *hub {
	h := &hub{
		ps:          rdb.Subscribe(context.Background()),
		logger:      log,
		chans:       make(map[string]*channel),
		pings:       make(map[string]*channel),
		reconnected: make(chan struct{}, 1),
		stop:        make(chan struct{}),
	}
	h.up.Store(true)
	h.wg.Go(h.receive)
	h.wg.Go(h.ping)
	return h
}

// subscribe adds deliver to the subscribers of ch, subscribing the
// connection to ch if it is the first, and waits for Redis to confirm.
func (h *hub) subscribe(ch string, deliver func([]byte)) (cancel func()) {
	h.opMu.Lock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.opMu.Unlock()
		return func() {}
	}
	c := h.chans[ch]
	first := c == nil
	if first {
		c = &channel{subs: make(map[uint64]func([]byte)), ready: make(chan struct{})}
		h.chans[ch] = c
	}
	h.next++
	id := h.next
	c.subs[id] = deliver
	up := h.up.Load()
	h.mu.Unlock()
	if first {
		h.request(c, ch, up)
	}
	h.opMu.Unlock()

	t := time.NewTimer(confirmWait)
	select {
	case <-c.ready:
	case <-t.C:
		c.confirm()
	}
	t.Stop()

	var once sync.Once
	return func() { once.Do(func() { h.unsubscribe(ch, c, id) }) }
}

// request subscribes the connection to ch, whose channel is c, and arranges
// for c to be confirmed: Redis answers commands on one connection in order,
// so the answer to a PING sent after the SUBSCRIBE means that the
// subscription is in place. (If the connection is replaced meanwhile,
// go-redis subscribes the new one to ch before sending the PING on it.)
// When the connection is down, c is confirmed at once: nothing can be
// delivered until it is back, and then ch is subscribed again.
func (h *hub) request(c *channel, ch string, up bool) {
	ctx, cancel := context.WithTimeout(context.Background(), hubOpTimeout)
	defer cancel()
	if err := h.ps.Subscribe(ctx, ch); err != nil || !up {
		c.confirm()
		return
	}
	token := "c" + strconv.FormatUint(h.token.Add(1), 10)
	h.mu.Lock()
	h.pings[token] = c
	h.mu.Unlock()
	if err := h.ps.Ping(ctx, token); err != nil {
		h.mu.Lock()
		delete(h.pings, token)
		h.mu.Unlock()
		c.confirm()
	}
}

func (h *hub) unsubscribe(ch string, c *channel, id uint64) {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	delete(c.subs, id)
	last := len(c.subs) == 0 && h.chans[ch] == c && !h.closed
	if last {
		delete(h.chans, ch)
	}
	h.mu.Unlock()
	if last {
		ctx, cancel := context.WithTimeout(context.Background(), hubOpTimeout)
		defer cancel()
		// On failure the connection is replaced, and the new one is
		// subscribed only to the channels still wanted.
		h.ps.Unsubscribe(ctx, ch)
	}
}

// receive reads from the subscription connection until close.
func (h *hub) receive() {
	var failures int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), hubSilence)
		msg, err := h.ps.Receive(ctx)
		cancel()
		if err != nil {
			select {
			case <-h.stop:
				return
			default:
			}
			h.setUp(false, err)
			// go-redis has dropped the connection; the next Receive
			// dials again and subscribes to every channel.
			failures++
			pause := time.NewTimer(min(time.Duration(failures)*100*time.Millisecond, time.Second))
			select {
			case <-pause.C:
			case <-h.stop:
				pause.Stop()
				return
			}
			continue
		}
		failures = 0
		h.setUp(true, nil)
		switch m := msg.(type) {
		case *redis.Message:
			h.dispatch(m.Channel, []byte(m.Payload))
		case *redis.Pong:
			h.mu.Lock()
			c := h.pings[m.Payload]
			delete(h.pings, m.Payload)
			h.mu.Unlock()
			if c != nil {
				c.confirm()
			}
		}
	}
}

// setUp records whether the connection works, and announces a return.
func (h *hub) setUp(up bool, err error) {
	if h.up.Load() == up {
		return
	}
	h.up.Store(up)
	h.mu.Lock()
	var stale []*channel
	if !up {
		// Answers to PINGs on a dead connection will never come.
		for token, c := range h.pings {
			stale = append(stale, c)
			delete(h.pings, token)
		}
	}
	h.mu.Unlock()
	for _, c := range stale {
		c.confirm()
	}
	if !up {
		h.logger.Warn("redis subscription connection lost; reconnecting", "err", err)
	} else {
		h.logger.Info("redis subscription connection back")
		select {
		case h.reconnected <- struct{}{}:
		default:
		}
	}
}

// dispatch calls every local subscriber of ch. They never block; they are
// called outside the lock, so that one may cancel its own subscription.
func (h *hub) dispatch(ch string, payload []byte) {
	h.mu.RLock()
	subs := h.scratch[:0]
	if c := h.chans[ch]; c != nil {
		for _, deliver := range c.subs {
			subs = append(subs, deliver)
		}
	}
	h.mu.RUnlock()
	for i, deliver := range subs {
		deliver(payload)
		subs[i] = nil
	}
	h.scratch = subs[:0]
}

// ping keeps the subscription connection checked: an answer, like any
// message, shows it alive; silence makes receive replace it.
func (h *hub) ping() {
	t := time.NewTicker(hubPing)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), hubOpTimeout)
			h.ps.Ping(ctx, "hub")
			cancel()
		}
	}
}

// close unsubscribes everything and closes the connection.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.mu.Unlock()
	close(h.stop)
	if err := h.ps.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		h.logger.Warn("close redis subscription connection", "err", err)
	}
	h.wg.Wait()
}
