package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// publisher sends a node's PUBLISH commands to Redis, several in one
// pipeline when they come together: one write and one read for the lot
// instead of a round trip each (and Redis reads them in one go too).
//
// No goroutine waits for work. A Send that finds no batch under way sends
// its own publish at once, on its own goroutine; Sends that come meanwhile
// queue up, and the next batch takes all of them. Whoever sent a batch and
// finds more queued hands the sending over to a new goroutine and returns
// with its answer, so no caller waits for more than the batch after its
// own. The busier the node, the larger the batches. It lives as long as
// its Store.
type publisher struct {
	rdb *redis.Client

	mu     sync.Mutex
	queue  []*publishReq
	busy   bool // a batch is being sent, and the queue will be taken
	closed bool
}

// publishReq is one Send waiting for its PUBLISH: msg stays the caller's,
// who waits for done before reusing it.
type publishReq struct {
	channel string
	msg     []byte
	n       int64 // subscribers Redis published to
	err     error
	done    chan struct{}
}

// publish publishes msg on channel and reports how many subscribers Redis
// delivered it to. It waits for Redis's answer, bounded by hubOpTimeout a
// batch, so that msg is no longer used when it returns.
func (p *publisher) publish(channel string, msg []byte) (int64, error) {
	r := &publishReq{channel: channel, msg: msg}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, errClosed
	}
	if p.busy {
		r.done = make(chan struct{})
		p.queue = append(p.queue, r)
		p.mu.Unlock()
		<-r.done
		return r.n, r.err
	}
	p.busy = true
	p.mu.Unlock()
	p.send([]*publishReq{r})
	p.next()
	return r.n, r.err
}

// next sends what queued up during the last batch, on a new goroutine,
// or ends the busy spell.
func (p *publisher) next() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		p.busy = false
		return
	}
	batch := p.queue
	p.queue = nil
	go func() {
		p.send(batch)
		for _, r := range batch {
			close(r.done)
		}
		p.next()
	}()
}

// send publishes a batch, in one pipeline if it holds more than one, and
// sets each request's answer.
func (p *publisher) send(batch []*publishReq) {
	ctx, cancel := context.WithTimeout(context.Background(), hubOpTimeout)
	defer cancel()
	if len(batch) == 1 {
		r := batch[0]
		r.n, r.err = p.rdb.Publish(ctx, r.channel, r.msg).Result()
		return
	}
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(batch))
	for i, r := range batch {
		cmds[i] = pipe.Publish(ctx, r.channel, r.msg)
	}
	pipe.Exec(ctx) // each command carries its own result or error
	for i, r := range batch {
		r.n, r.err = cmds[i].Result()
	}
}

// close refuses the publishes that come from now on. Those already queued
// are still sent (and fail fast once the client is closed).
func (p *publisher) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}
