package signal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// wireConn is the network connection under a session's WebSocket. The
// session's writer frames its messages itself (server frames are unmasked
// and need no state) and sends all the messages queued for a client in one
// write system call; the WebSocket library writes only control frames (a
// pong, the close frame) through Write, one whole frame per call, so the
// two never interleave. Every write has a deadline that is moved forward
// only now and then, instead of a timer armed per frame.
type wireConn struct {
	net.Conn
	timeout time.Duration

	mu sync.Mutex
	// closeSent is set once the library wrote the close frame: no data
	// frame may follow it.
	closeSent bool
	// renewAt is when the write deadline is next moved forward: a write
	// that makes no progress for between timeout/2 and timeout fails.
	renewAt time.Time

	// Reads, on a plain TCP connection (raw is set): the session waits
	// for data in fill, parked high on its stack with no buffer held,
	// and data is read into a pooled chunk only once it is there. rmu
	// guards chunk (nil when empty) and the unread part of it.
	raw      syscall.RawConn
	rmu      sync.Mutex
	chunk    *[]byte
	unread   []byte
	readErr  error
	readOnce func(fd uintptr) bool
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

func newWireConn(c net.Conn, timeout time.Duration) *wireConn {
	w := &wireConn{Conn: c, timeout: timeout}
	w.useRawReads(c)
	return w
}

// buffered is how many bytes were read from the socket and not yet taken.
func (c *wireConn) buffered() int {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return len(c.unread)
}

// fill waits until data can be read, reads it into a chunk, and returns.
// It does nothing when data is already waiting or the connection is not
// plain TCP.
func (c *wireConn) fill() error {
	if c.raw == nil || c.buffered() > 0 {
		return nil
	}
	if err := c.raw.Read(c.readOnce); err != nil {
		return err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.readErr
}

// Read implements net.Conn for the WebSocket library's reader.
func (c *wireConn) Read(p []byte) (int, error) {
	if c.raw == nil {
		return c.Conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		c.rmu.Lock()
		if len(c.unread) > 0 {
			n := copy(p, c.unread)
			c.unread = c.unread[n:]
			if len(c.unread) == 0 {
				chunkPool.Put(c.chunk)
				c.chunk, c.unread = nil, nil
			}
			c.rmu.Unlock()
			return n, nil
		}
		if err := c.readErr; err != nil {
			c.rmu.Unlock()
			return 0, err
		}
		c.rmu.Unlock()
		if err := c.raw.Read(c.readOnce); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return 0, err
			}
			return 0, &net.OpError{Op: "read", Net: "tcp", Err: err}
		}
	}
}

// Write sends a control frame written by the WebSocket library.
func (c *wireConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) > 0 && p[0]&0x0f == opClose {
		c.closeSent = true
	}
	return c.writeLocked(p)
}

// WebSocket frame bits (RFC 6455, section 5.2).
const (
	finText = 0x81 // FIN, opcode 1 (text)
	opClose = 0x8
)

func (c *wireConn) writeLocked(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if now := time.Now(); now.After(c.renewAt) {
			if err := c.Conn.SetWriteDeadline(now.Add(c.timeout)); err != nil {
				return written, err
			}
			c.renewAt = now.Add(c.timeout / 2)
		}
		n, err := c.Conn.Write(p[:min(len(p), flushChunk)])
		written += n
		p = p[n:]
		if err != nil {
			return written, err
		}
	}
	return written, nil
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
		b = append(b, finText, byte(n))
	case n <= 0xffff:
		b = append(b, finText, 126, byte(n>>8), byte(n))
	default:
		b = append(b, finText, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, msg...)
}

// Buffers given to the WebSocket library. Reads: on plain TCP, wireConn
// reads the socket in chunks of its own, so the library's buffer only
// saves calls into it; on TLS, a frame header and a small message are
// read with one call. Writes: the library writes only control frames
// (at most 127 bytes from a server), each flushed whole from this buffer.
// A frame that would not fit would go out in two calls, which Write
// would take for two frames: see wire_test.go.
const (
	readAhead   = 128
	writeBuffer = 128
)

// upgradeWriter hands the WebSocket library a wireConn when it hijacks the
// HTTP connection, instead of the bare one, with buffers of the sizes
// above instead of the HTTP server's 4 KB ones (which go with the HTTP
// connection once the handler returns).
type upgradeWriter struct {
	http.ResponseWriter
	timeout time.Duration
	wire    *wireConn
	br      *bufio.Reader
	// ownReader is set when br is ours, made empty at the hijack.
	ownReader bool
}

// Hijack implements http.Hijacker.
func (w *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.wire = newWireConn(conn, w.timeout)
	w.br = brw.Reader
	if w.br.Buffered() == 0 {
		// Nothing read ahead by the HTTP server (a client may not send
		// before the handshake's answer, and browsers do not), so its
		// reader can go.
		w.br = bufio.NewReaderSize(w.wire, readAhead)
		w.ownReader = true
	}
	return w.wire, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.wire, writeBuffer)), nil
}

// accepted is called once the WebSocket library has its connection. The
// library makes its reader read through an io.MultiReader, in case the
// HTTP server had read ahead; when it had not, the reader is pointed
// straight at the connection again, which saves a call per read.
func (w *upgradeWriter) accepted() {
	if w.ownReader && w.br.Buffered() == 0 {
		w.br.Reset(w.wire)
	}
}

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w *upgradeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
