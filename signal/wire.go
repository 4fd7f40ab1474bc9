package signal

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// wireConn is the network connection under a session's WebSocket. The
// session frames its messages itself (server frames are unmasked and need
// no state) and sends all the messages queued for a client in one write
// system call; control frames go through the same lock, one whole frame
// per write, so the two never interleave. Every write has a deadline that
// is moved forward only now and then, instead of a timer armed per frame.
type wireConn struct {
	net.Conn
	timeout time.Duration

	mu sync.Mutex
	// closeSent is set once the close frame is written: no frame may
	// follow it.
	closeSent bool
	// renewAt is when the write deadline is next moved forward: a write
	// that makes no progress for between timeout/2 and timeout fails.
	renewAt time.Time
	// hungUp is set once the connection is being ended (hangUp) or a
	// write failed: writes fail from then on.
	hungUp atomic.Bool

	// Reads, by the session's reading goroutine only. On a plain TCP
	// connection (raw is set) the session waits for data in fill, with
	// no buffer held, and data is read into a pooled chunk only once it
	// is there; on others (TLS) a chunk is held while it waits. unread
	// is what was read and not yet taken, in chunk or in early bytes.
	raw       syscall.RawConn
	chunk     *[]byte
	unread    []byte
	readErr   error
	readOnce  func(fd uintptr) bool // for raw.Read: waits until it read
	readAvail func(fd uintptr)      // for raw.Control: reads what is there
	// readUntil is the read deadline fillWithin last set.
	readUntil time.Time

	// Writes on a plain TCP connection (raw is set), under mu: writeOnce
	// writes wbuf for raw.Write, taking what it wrote off its front, and
	// keeps its error in writeErr.
	writeOnce func(fd uintptr) bool
	wbuf      []byte
	writeErr  error
}

// readChunk is the most read from the socket at once.
const readChunk = 4096

var chunkPool = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

// flushChunk is the most written with one deadline renewal, so that a
// large batch to a slow but live client is not cut for its size alone.
const flushChunk = 64 << 10

// maxPooledWire is the largest batch buffer kept for reuse.
const maxPooledWire = 256 << 10

var wirePool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// newWireConn wraps c; early holds bytes the client sent that were read
// before the connection was taken over.
func newWireConn(c net.Conn, timeout time.Duration, early []byte) *wireConn {
	w := &wireConn{Conn: c, timeout: timeout, unread: early}
	w.useRawIO(c)
	return w
}

// fill waits until data can be read and reads it into a chunk, unless
// some is unread already.
func (c *wireConn) fill() error {
	if len(c.unread) > 0 {
		return nil
	}
	if c.readErr != nil {
		return c.readErr
	}
	if c.raw != nil {
		if err := c.raw.Read(c.readOnce); err != nil {
			return err
		}
		return c.readErr
	}
	c.chunk = chunkPool.Get().(*[]byte)
	n, err := c.Conn.Read(*c.chunk)
	c.unread = (*c.chunk)[:n]
	if n > 0 {
		c.readErr = err // for the next fill, once this data is taken
		return nil
	}
	c.consume(0)
	if err == nil {
		err = io.ErrNoProgress
	}
	c.readErr = err
	return err
}

// fillWithin is fill for a plain TCP socket, giving up with
// os.ErrDeadlineExceeded once it waited between d/2 and d. The deadline is
// moved only when less than d/2 of it is left, so that a busy connection
// does not pay for a timer change per read.
func (c *wireConn) fillWithin(d time.Duration) error {
	if len(c.unread) > 0 {
		return nil
	}
	if now := time.Now(); c.readUntil.Sub(now) < d/2 {
		c.readUntil = now.Add(d)
		if err := c.Conn.SetReadDeadline(c.readUntil); err != nil {
			return err
		}
	}
	return c.fill()
}

// noReadDeadline lifts the deadline fillWithin set, for a wait with none.
func (c *wireConn) noReadDeadline() error {
	c.readUntil = time.Time{}
	return c.Conn.SetReadDeadline(time.Time{})
}

// readNow reads what a plain TCP socket has, if anything, without
// waiting; unread stays empty when there was nothing.
func (c *wireConn) readNow() error {
	if c.readErr != nil {
		return c.readErr
	}
	if err := c.raw.Control(c.readAvail); err != nil {
		return err
	}
	return c.readErr
}

// hangUp ends the connection from any goroutine. The reading side is
// shut, which wakes the session wherever it waits for data (in a read,
// or parked in the poller) to find the end of the stream, finish and
// close the socket; a write under way fails, and so does any after it.
func (c *wireConn) hangUp() {
	c.hungUp.Store(true)
	c.Conn.SetWriteDeadline(time.Now())
	if tc, ok := c.Conn.(*net.TCPConn); ok && tc.CloseRead() == nil {
		return
	}
	c.Conn.Close()
}

// consume takes n unread bytes; the chunk goes back to the pool once all
// of it is taken.
func (c *wireConn) consume(n int) {
	c.unread = c.unread[n:]
	if len(c.unread) == 0 {
		c.unread = nil
		if c.chunk != nil {
			chunkPool.Put(c.chunk)
			c.chunk = nil
		}
	}
}

// writeControl writes one control frame (at most 125 bytes of payload,
// which the callers ensure). Nothing can be written after a close frame.
func (c *wireConn) writeControl(op byte, payload []byte) error {
	var b [2 + maxControlPayload]byte
	b[0], b[1] = finBit|op, byte(len(payload))
	n := 2 + copy(b[2:], payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	if op == opClose {
		c.closeSent = true
	}
	_, err := c.writeLocked(b[:n])
	return err
}

func (c *wireConn) writeLocked(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if now := time.Now(); now.After(c.renewAt) {
			if err := c.Conn.SetWriteDeadline(now.Add(c.timeout)); err != nil {
				return written, err
			}
			c.renewAt = now.Add(c.timeout / 2)
		}
		// Checked after the renewal: hangUp sets the flag before it
		// moves the deadline to now, which a renewal must not undo.
		if c.hungUp.Load() {
			return written, net.ErrClosed
		}
		n, err := c.writeSome(p[:min(len(p), flushChunk)])
		written += n
		p = p[n:]
		if err != nil {
			// Part of a frame may have gone out: nothing may follow it.
			c.hungUp.Store(true)
			return written, err
		}
	}
	return written, nil
}

// writeSome writes all of p, waiting as long as the write deadline lets
// it. The caller holds mu.
func (c *wireConn) writeSome(p []byte) (int, error) {
	if c.raw == nil {
		return c.Conn.Write(p)
	}
	c.wbuf, c.writeErr = p, nil
	err := c.raw.Write(c.writeOnce)
	n := len(p) - len(c.wbuf)
	if err == nil {
		err = c.writeErr
	}
	c.wbuf, c.writeErr = nil, nil
	return n, err
}

// writeText sends each message of b as a text frame, all in one write.
func (c *wireConn) writeText(b *outbox) error {
	buf := wirePool.Get().(*[]byte)
	out := *buf
	start := 0
	for _, end := range b.ends {
		out = appendTextFrame(out, b.buf[start:end])
		start = end
	}
	c.mu.Lock()
	var err error
	if c.closeSent {
		err = net.ErrClosed
	} else {
		_, err = c.writeLocked(out)
	}
	c.mu.Unlock()
	if cap(out) <= maxPooledWire {
		*buf = out[:0]
		wirePool.Put(buf)
	}
	return err
}

// appendTextFrame appends msg as one unmasked, final text frame.
func appendTextFrame(b, msg []byte) []byte {
	switch n := len(msg); {
	case n <= 125:
		b = append(b, finBit|opText, byte(n))
	case n <= 0xffff:
		b = append(b, finBit|opText, 126, byte(n>>8), byte(n))
	default:
		b = append(b, finBit|opText, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, msg...)
}
