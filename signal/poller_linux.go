package signal

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// poller lets sessions with nothing to read wait without a goroutine: a
// session that finds its socket empty arms it in an epoll set of the
// poller's (one shot, level-triggered) and its goroutine ends; when the
// socket has data, or its reading side is shut, the poller resumes the
// session on a new goroutine. An idle connection thus costs its structs
// and no stack.
//
// A parked session is resumed once: by the poller, or by wake when its
// connection is ended from elsewhere (a connection closed while armed
// leaves the epoll set without an event). Whoever turns its parked flag
// off runs it.
//
// The epoll set's own descriptor is waited on through Go's network
// poller, so the poller's goroutine is parked like any reader and no
// thread sits in a blocking system call. Sessions are found by their
// connection number, not by descriptor, so that a descriptor reused after
// a close cannot reach another session.
type poller struct {
	file   *os.File // the epoll set
	epfd   int      // its descriptor (file.Fd would make it blocking)
	raw    syscall.RawConn
	resume func(*session)

	mu       sync.Mutex
	sessions map[uint64]*session // by connection number, once armed

	done chan struct{} // closed when run returns
}

// newPoller makes a poller that hands ready sessions to resume, and starts
// its goroutine; close stops it.
func newPoller(resume func(*session)) (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(fd), "epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("epoll set: %w", err)
	}
	p := &poller{file: file, epfd: fd, raw: raw, resume: resume, sessions: make(map[uint64]*session), done: make(chan struct{})}
	go p.run()
	return p, nil
}

// pollerEvents is how many ready sessions one wake takes at most.
const pollerEvents = 128

// run waits for ready sessions and resumes each on a goroutine of its own,
// until the poller is closed.
func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, pollerEvents)
	ready := make([]*session, 0, pollerEvents)
	var n int
	var werr error
	wait := func(fd uintptr) bool {
		n, werr = syscall.EpollWait(int(fd), events, 0)
		if werr == syscall.EINTR {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil
	}
	for {
		if err := p.raw.Read(wait); err != nil {
			return // closed
		}
		if werr != nil {
			return
		}
		p.mu.Lock()
		ready = ready[:0]
		for _, ev := range events[:n] {
			if s := p.sessions[eventToken(ev)]; s != nil {
				ready = append(ready, s)
			}
		}
		p.mu.Unlock()
		for i, s := range ready {
			p.wake(s)
			ready[i] = nil
		}
	}
}

// park arms s's socket: the poller resumes s once it can be read. The
// caller's goroutine must then leave s alone: another may run it at once.
func (p *poller) park(s *session) error {
	select {
	case <-p.done:
		return errors.New("the poller has stopped")
	default:
	}
	tok := s.seq
	p.mu.Lock()
	_, armedBefore := p.sessions[tok]
	p.sessions[tok] = s
	p.mu.Unlock()
	op := syscall.EPOLL_CTL_MOD
	if !armedBefore {
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
	setEventToken(&ev, tok)
	s.parked.Store(true)
	var cerr error
	err := s.wire.raw.Control(func(fd uintptr) {
		cerr = syscall.EpollCtl(p.fd(), op, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil && s.parked.CompareAndSwap(true, false) {
		// Still ours: the caller goes on and ends it.
		p.forget(s)
		return fmt.Errorf("epoll arm: %w", err)
	}
	return nil
}

// wake resumes s on a new goroutine if it is parked. It may be called
// from any goroutine, any number of times.
func (p *poller) wake(s *session) {
	if s.parked.CompareAndSwap(true, false) {
		go p.resume(s)
	}
}

// forget takes s out of the poller, before its socket is closed. Only the
// goroutine running s calls it.
func (p *poller) forget(s *session) {
	tok := s.seq
	p.mu.Lock()
	_, armed := p.sessions[tok]
	delete(p.sessions, tok)
	p.mu.Unlock()
	if armed {
		s.wire.raw.Control(func(fd uintptr) {
			syscall.EpollCtl(p.fd(), syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
}

// fd is the epoll set's descriptor. The set lives as long as the poller,
// which is closed only once every session has ended.
func (p *poller) fd() int { return p.epfd }

// close stops the poller and waits for its goroutine.
func (p *poller) close() error {
	err := p.file.Close()
	<-p.done
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close the epoll set: %w", err)
	}
	return nil
}

// The 64 bits of user data of an epoll event carry a connection number.
func setEventToken(ev *syscall.EpollEvent, tok uint64) {
	ev.Fd, ev.Pad = int32(uint32(tok)), int32(uint32(tok>>32))
}

func eventToken(ev syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
