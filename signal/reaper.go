package signal

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"lepeerchat/room"
	"lepeerchat/store"
)

// errUnchanged aborts a store update that turns out to have nothing to do.
var errUnchanged = errors.New("unchanged")

// reaper discards each room at the exact time its discard clock runs out:
// one timer per room whose clock is running, not a periodic sweep. The
// deadline itself lives in the stored room, so it survives a restart; the
// timer only wakes the node up to check it.
type reaper struct {
	store  store.Store
	now    func() time.Time
	logger *slog.Logger
	// onDiscard is told of every room discarded, as it was last stored.
	onDiscard func(*room.Room)

	mu       sync.Mutex
	timers   map[string]*time.Timer
	stopped  bool
	inflight sync.WaitGroup // discards running now
}

func newReaper(st store.Store, now func() time.Time, logger *slog.Logger, onDiscard func(*room.Room)) *reaper {
	return &reaper{store: st, now: now, logger: logger, timers: make(map[string]*time.Timer), onDiscard: onDiscard}
}

// track follows the room's discard clock after a change: it arms a timer
// when the clock runs and disarms it when the clock is stopped.
func (p *reaper) track(r *room.Room) {
	if r == nil {
		return
	}
	p.schedule(r.ID, r.DiscardAt)
}

// schedule arms the room's timer for at, or disarms it when at is zero. In
// a cluster, other nodes' deadlines arrive here too (cluster.go).
func (p *reaper) schedule(id string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.timers[id]; ok {
		t.Stop()
		delete(p.timers, id)
	}
	if at.IsZero() || p.stopped {
		return
	}
	p.timers[id] = time.AfterFunc(at.Sub(p.now()), func() { p.discard(id) })
}

// discard deletes the room if its clock has really run out: another node or
// a reconnection may have stopped it since the timer was set.
func (p *reaper) discard(id string) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	delete(p.timers, id)
	p.inflight.Add(1)
	p.mu.Unlock()
	defer p.inflight.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var gone, later *room.Room
	_, err := p.store.Update(ctx, id, func(r *room.Room) (*room.Room, error) {
		gone, later = nil, nil
		switch {
		case r == nil:
			return nil, errUnchanged
		case r.Discardable(p.now()):
			gone = r
			return nil, nil
		default:
			later = r
			return nil, errUnchanged
		}
	})
	switch {
	case err == nil:
		p.logger.Info("room discarded", "room", id)
		p.onDiscard(gone)
	case errors.Is(err, errUnchanged):
		p.track(later)
	default:
		// The store is down: try again shortly rather than forget it.
		p.logger.Warn("discard room failed; retrying", "room", id, "err", err)
		p.mu.Lock()
		if !p.stopped {
			p.timers[id] = time.AfterFunc(5*time.Second, func() { p.discard(id) })
		}
		p.mu.Unlock()
	}
}

// stop disarms every timer and waits for discards in progress; rooms keep
// their stored deadlines for the next start.
func (p *reaper) stop() {
	p.mu.Lock()
	p.stopped = true
	for id, t := range p.timers {
		t.Stop()
		delete(p.timers, id)
	}
	p.mu.Unlock()
	p.inflight.Wait()
}
