//go:build linux

// Command floor is the least a WebSocket signalling relay can do, run as a
// floor for the signalling benchmarks: what relaying a message costs this
// machine's kernel and no more. It speaks just enough of the PeerJS
// server's wire format for cmd/lepeerchat-load (-target peerjs) to drive
// it with the same workloads as lepeerchat and PeerJS: it answers the
// WebSocket handshake of /peerjs?id=ID with {"type":"OPEN"}, and forwards
// every text frame that names a "dst" to the connection of that id, as it
// came. It checks nothing, keeps no state but the connections, frames
// nothing but what it forwards, and runs one thread on epoll with raw
// system calls, with no scheduler in its way.
//
//	floor -port 18700
//
// Loopback only. bench/signalling.sh runs it beside the other servers.
package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"
)

func main() {
	port := flag.Int("port", 18700, "loopback TCP port")
	flag.Parse()
	// Signals end the process as they come: with the one P the relay
	// holds in its raw system calls, a goroutine waiting for them might
	// never run.
	ls, _, err := listen(*port)
	if err == nil {
		err = serve(ls, new(atomic.Bool))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// conn is one client: its socket, its id once the handshake is done, and
// the bytes read and not yet taken (a partial request or frame).
type conn struct {
	fd   int
	id   string
	open bool
	in   []byte
}

type relay struct {
	ep    int
	conns map[int]*conn    // by socket
	byID  map[string]*conn // open connections by id
	buf   []byte           // what one read takes
	out   []byte           // one frame on its way out
}

// listen opens a non-blocking listening socket on 127.0.0.1:port (0: any
// free port) and returns it with its port.
func listen(port int) (int, int, error) {
	ls, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.SetsockoptInt(ls, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return 0, 0, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := syscall.Bind(ls, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		return 0, 0, fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(ls, 4096); err != nil {
		return 0, 0, fmt.Errorf("listen: %w", err)
	}
	sa, err := syscall.Getsockname(ls)
	if err != nil {
		return 0, 0, fmt.Errorf("getsockname: %w", err)
	}
	return ls, sa.(*syscall.SockaddrInet4).Port, nil
}

// idleWake bounds one wait for events, so that serve sees stop, and
// yields to other goroutines (the garbage collector's among them), which
// a raw system call does not, at least that often.
const idleWake = 100 // ms

// serve relays on the listening socket ls until stop is set, then closes
// every socket.
func serve(ls int, stop *atomic.Bool) error {
	defer syscall.Close(ls)
	ep, err := syscall.EpollCreate1(0)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	defer syscall.Close(ep)
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, ls, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(ls)}); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	r := &relay{ep: ep, conns: map[int]*conn{}, byID: map[string]*conn{}, buf: make([]byte, 64<<10)}
	defer func() {
		for _, c := range r.conns {
			r.drop(c)
		}
	}()
	events := make([]syscall.EpollEvent, 256)
	for !stop.Load() {
		// A raw epoll_wait: the process has nothing else to do, so the
		// scheduler need not hear of it.
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(ep),
			uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), idleWake, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("epoll_wait: %w", e)
		}
		if n == 0 {
			runtime.Gosched()
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == ls {
				r.accept(ls)
				continue
			}
			if c := r.conns[int(ev.Fd)]; c != nil {
				r.read(c)
			}
		}
	}
	return nil
}

func (r *relay) accept(ls int) {
	for {
		fd, _, err := syscall.Accept4(ls, syscall.SOCK_NONBLOCK)
		if err != nil {
			return
		}
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		if syscall.EpollCtl(r.ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}) != nil {
			syscall.Close(fd)
			continue
		}
		r.conns[fd] = &conn{fd: fd}
	}
}

// read takes what the socket has (level-triggered: one read, the rest at
// the next wait), then handles every complete request or frame.
func (r *relay) read(c *conn) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)))
	if e == syscall.EAGAIN || e == syscall.EINTR {
		return
	}
	if e != 0 || n == 0 {
		r.drop(c)
		return
	}
	data := r.buf[:n]
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	used, err := r.handle(c, data)
	if err != nil {
		r.drop(c)
		return
	}
	c.in = append(c.in[:0], data[used:]...)
}

// handle answers the handshake or forwards frames, and returns how many
// bytes of data it took.
func (r *relay) handle(c *conn, data []byte) (int, error) {
	used := 0
	if !c.open {
		end := bytes.Index(data, []byte("\r\n\r\n"))
		if end < 0 {
			return 0, nil
		}
		if err := r.handshake(c, data[:end]); err != nil {
			return 0, err
		}
		used = end + 4
	}
	for {
		payload, op, n, ok := clientFrame(data[used:])
		if n < 0 {
			return used, errors.New("frame too large")
		}
		if !ok {
			return used, nil
		}
		used += n
		if op == 8 { // close
			return used, errors.New("closed by the client")
		}
		if op == 1 {
			r.forward(payload)
		}
	}
}

// maxFrame is the largest frame the floor takes.
const maxFrame = 16 << 20

// clientFrame unmasks the client frame at the start of b, if it is
// complete, and returns its payload, opcode and length; a length of -1
// when the frame is over maxFrame.
func clientFrame(b []byte) (payload []byte, op byte, n int, ok bool) {
	if len(b) < 2 {
		return nil, 0, 0, false
	}
	op, size, head := b[0]&0x0f, int(b[1]&0x7f), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return nil, 0, 0, false
		}
		size, head = int(b[2])<<8|int(b[3]), 4
	case 127:
		if len(b) < 10 {
			return nil, 0, 0, false
		}
		var n uint64
		for _, x := range b[2:10] {
			n = n<<8 | uint64(x)
		}
		if n > maxFrame {
			return nil, 0, -1, false
		}
		size, head = int(n), 10
	}
	if b[1]&0x80 != 0 {
		head += 4
	}
	if len(b) < head+size {
		return nil, 0, 0, false
	}
	payload = b[head : head+size]
	if b[1]&0x80 != 0 {
		mask := b[head-4 : head]
		for i := range payload {
			payload[i] ^= mask[i&3]
		}
	}
	return payload, op, head + size, true
}

var dstKey = []byte(`"dst":"`)

// forward writes msg to the connection its "dst" names, as one frame.
func (r *relay) forward(msg []byte) {
	i := bytes.Index(msg, dstKey)
	if i < 0 {
		return
	}
	rest := msg[i+len(dstKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return
	}
	to := r.byID[string(rest[:j])]
	if to == nil {
		return
	}
	r.out = appendFrame(r.out[:0], msg)
	if !r.write(to, r.out) {
		r.drop(to)
	}
}

// write writes all of b to c, and reports false when it could not: part
// of a frame may have gone, so nothing may follow it.
func (r *relay) write(c *conn, b []byte) bool {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e == syscall.EINTR {
			continue
		}
		if e == syscall.EAGAIN && waitWritable(c.fd) {
			continue
		}
		if e != 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// waitWritable waits, up to a second, until fd can be written: the floor
// keeps no queue, so a full socket holds the whole relay up (on loopback,
// with a generator that reads all it gets, it does not happen), and a
// client that takes no more for a second is dropped.
func waitWritable(fd int) bool {
	pfd := struct {
		fd             int32
		events, revent int16
	}{fd: int32(fd), events: 0x4} // POLLOUT
	ts := syscall.Timespec{Sec: 1}
	n, _, e := syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return e == 0 && n == 1
}

// handshake answers the WebSocket upgrade of /peerjs?id=ID and says OPEN.
func (r *relay) handshake(c *conn, req []byte) error {
	lines := bytes.Split(req, []byte("\r\n"))
	parts := bytes.Fields(lines[0])
	if len(parts) < 2 {
		return errors.New("bad request line")
	}
	u, err := url.ParseRequestURI(string(parts[1]))
	if err != nil {
		return err
	}
	var key []byte
	for _, l := range lines[1:] {
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Sec-WebSocket-Key")) {
			key = bytes.TrimSpace(v)
		}
	}
	id := u.Query().Get("id")
	if id == "" || key == nil {
		return errors.New("no id or no key")
	}
	sum := sha1.Sum(append(key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	if !r.write(c, appendFrame([]byte(resp), []byte(`{"type":"OPEN"}`))) {
		return errors.New("handshake not written")
	}
	c.id, c.open = id, true
	r.byID[id] = c
	return nil
}

// appendFrame appends msg as one unmasked, final text frame.
func appendFrame(b, msg []byte) []byte {
	switch n := len(msg); {
	case n <= 125:
		b = append(b, 0x81, byte(n))
	case n <= 0xffff:
		b = append(b, 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x81, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, msg...)
}

func (r *relay) drop(c *conn) {
	syscall.EpollCtl(r.ep, syscall.EPOLL_CTL_DEL, c.fd, nil)
	syscall.Close(c.fd)
	delete(r.conns, c.fd)
	if c.open && r.byID[c.id] == c {
		delete(r.byID, c.id)
	}
}
