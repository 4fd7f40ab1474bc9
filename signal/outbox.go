package signal

import "sync"

// outbox holds the messages waiting to be written to one client, back to
// back in one buffer: queueing a message copies it and allocates nothing
// once the buffers have grown. Outboxes come from outboxPool when a first
// message is queued and go back once written, so that an idle connection
// holds none.
type outbox struct {
	buf  []byte
	ends []int // where each message ends in buf
}

// maxPooledOutbox is the largest buffer kept for reuse: an outbox that
// carried an unusually large burst is left to the collector.
const maxPooledOutbox = 256 << 10

var outboxPool = sync.Pool{New: func() any { return &outbox{buf: make([]byte, 0, 2048), ends: make([]int, 0, 16)} }}

func getOutbox() *outbox { return outboxPool.Get().(*outbox) }

func putOutbox(o *outbox) {
	if cap(o.buf) > maxPooledOutbox {
		return
	}
	o.buf, o.ends = o.buf[:0], o.ends[:0]
	outboxPool.Put(o)
}

func (o *outbox) len() int { return len(o.ends) }

// add appends one message made of the concatenation of parts.
func (o *outbox) add(parts ...[]byte) {
	for _, p := range parts {
		o.buf = append(o.buf, p...)
	}
	o.ends = append(o.ends, len(o.buf))
}
