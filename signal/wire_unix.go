//go:build unix

package signal

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// useRawIO makes a plain TCP connection wait for data without a buffer
// (fill), reading with raw, non-blocking system calls once data is there,
// and writing with them too (see sysRead).
func (c *wireConn) useRawIO(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			c.raw = raw
			c.readOnce = c.readSocket
			c.readAvail = func(fd uintptr) { c.readSocket(fd) }
			c.writeOnce = c.writeSocket
		}
	}
}

// sysRead and sysWrite are read(2) and write(2) on the connection's
// socket, which is non-blocking, made as raw system calls: the scheduler
// is not told that a call is under way, since it cannot block. Told, it
// wakes its monitor thread (sysmon) whenever the process had been idle,
// which at tens of thousands of messages a second cost more server CPU
// than the calls themselves.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) { return rawIO(syscall.SYS_READ, fd, p) }

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) { return rawIO(syscall.SYS_WRITE, fd, p) }

func rawIO(trap, fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
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
		n, err := sysRead(fd, *c.chunk)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			chunkPool.Put(c.chunk)
			c.chunk = nil
			return false
		case err != 0:
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

// writeSocket is called by raw.Write until it returns true: it writes
// what is left of wbuf, and reports false when the socket takes no more
// for now.
func (c *wireConn) writeSocket(fd uintptr) bool {
	for len(c.wbuf) > 0 {
		n, err := sysWrite(fd, c.wbuf)
		switch err {
		case 0:
			if n == 0 {
				c.writeErr = io.ErrShortWrite
				return true
			}
			c.wbuf = c.wbuf[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.writeErr = &net.OpError{Op: "write", Net: "tcp", Err: err}
			return true
		}
	}
	return true
}
