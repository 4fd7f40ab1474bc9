//go:build unix

package signal

import (
	"io"
	"net"
	"syscall"
)

// useRawReads makes a plain TCP connection wait for data without a buffer
// (fill), reading with non-blocking system calls once data is there.
func (c *wireConn) useRawReads(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			c.raw = raw
			c.readOnce = c.readSocket
			c.readAvail = func(fd uintptr) { c.readSocket(fd) }
		}
	}
}

// readSocket is called by raw.Read until it returns true (fill), or once
// by raw.Control (readNow): it tries one non-blocking read into a pooled
// chunk and reports false, with no chunk held, when there is nothing to
// read yet.
func (c *wireConn) readSocket(fd uintptr) bool {
	if len(c.unread) > 0 || c.readErr != nil {
		return true
	}
	if c.chunk == nil {
		c.chunk = chunkPool.Get().(*[]byte)
	}
	for {
		n, err := syscall.Read(int(fd), *c.chunk)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			chunkPool.Put(c.chunk)
			c.chunk = nil
			return false
		case err != nil:
			c.readErr = &net.OpError{Op: "read", Net: "tcp", Err: err}
		case n == 0:
			c.readErr = io.EOF
		default:
			c.unread = (*c.chunk)[:n]
			return true
		}
		chunkPool.Put(c.chunk)
		c.chunk = nil
		return true
	}
}
