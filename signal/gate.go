package signal

import "sync"

// gate holds the bus messages of a connection that is still being admitted
// as a member: attach subscribes before its update, so that nothing sent to
// the member once it is recorded can be missed, but until that update has
// checked the claim, what arrives may be meant for someone else. The gate
// passes the held messages on, in order, once the connection is admitted;
// if it is refused they are dropped with the subscription.
type gate struct {
	to func([]byte)

	mu   sync.Mutex
	open bool
	held [][]byte
}

func (g *gate) deliver(frame []byte) {
	g.mu.Lock()
	if !g.open {
		if len(g.held) < outQueue {
			// The sender may use its buffer again once delivered.
			g.held = append(g.held, append([]byte(nil), frame...))
		}
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.to(frame)
}

// release passes on what was held and lets everything through from now on.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, frame := range g.held {
		g.to(frame)
	}
	g.held, g.open = nil, true
}
