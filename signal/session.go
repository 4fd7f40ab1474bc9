package signal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"lepeerchat/room"
)

// Tuning of one session.
const (
	// outQueue is how many messages may wait for a slow client before the
	// session gives up on it.
	outQueue = 256
	// maxStrikes is how many messages may be refused for going over the
	// rate within strikeWindow before the connection is cut.
	maxStrikes   = 20
	strikeWindow = 10 * time.Second
	// hardLimitFactor times MaxMessageBytes is the frame size at which the
	// connection is cut instead of answered.
	hardLimitFactor = 16
	// storeTimeout bounds one store operation on behalf of a client.
	storeTimeout = 5 * time.Second
)

// session is one WebSocket connection. Its read loop (run) decodes and
// handles client messages one at a time; a writer goroutine sends queued
// messages, all those waiting at once in one write; a pinger goroutine
// detects dead peers. All three end with the connection.
type session struct {
	srv     *Server
	conn    *websocket.Conn
	wire    *wireConn
	ip      string
	key     room.Conn
	limiter *rate.Limiter

	// qmu guards queue, the messages waiting for the writer (nil when
	// there are none), and full, set once the client fell too far behind:
	// from then on nothing more is queued, so that what it receives
	// before the close frame has no gap. wake tells the writer there are
	// messages.
	qmu   sync.Mutex
	queue *outbox
	full  bool
	wake  chan struct{}

	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// att is the room membership this connection speaks for, if any.
	att *attachment
	// ended is set, under mu, once run waits for the close handshake.
	ended bool
	// closedWith is the close code the server chose, if it chose one.
	closedWith websocket.StatusCode

	// closeOnce guards the close handshake, which runs in the background
	// (closing may be decided on another session's goroutine) and which
	// run waits for.
	closeOnce sync.Once
	closing   sync.WaitGroup
}

// attachment binds a session to one member of one room.
type attachment struct {
	room, member string
	unsubscribe  func()
	// signalHead starts the bus frame of every signal the member sends.
	signalHead []byte
}

func newSession(srv *Server, conn *websocket.Conn, wire *wireConn, ip string, key room.Conn) *session {
	return &session{
		srv:     srv,
		conn:    conn,
		wire:    wire,
		ip:      ip,
		key:     key,
		limiter: rate.NewLimiter(srv.cfg.Rate, srv.cfg.Burst),
		wake:    make(chan struct{}, 1),
	}
}

// run serves the connection until it ends, then records the disconnection.
func (s *session) run(parent context.Context) {
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(parent))
	defer s.cancel()
	cfg := &s.srv.cfg
	s.conn.SetReadLimit(int64(cfg.MaxMessageBytes) * hardLimitFactor)

	var wg sync.WaitGroup
	wg.Go(s.writeLoop)
	wg.Go(s.pingLoop)

	s.send(encode(welcomeMessage{
		header:  header{Type: "welcome"},
		Version: Version,
		Limits: limitsView{
			MaxMessageBytes: cfg.MaxMessageBytes,
			RatePerSecond:   float64(cfg.Rate),
			Burst:           cfg.Burst,
			MaxNameLength:   room.MaxNameLen,
			MaxMembers:      room.MaxMembers,
		},
	}))
	err := s.readLoop()
	s.detach(false)
	s.cancel()
	wg.Wait()
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.closing.Wait()
	s.conn.CloseNow()
	s.srv.cfg.Logger.Debug("session ended", "conn", s.key.Key(), "ip", s.ip, "err", err)
}

// readLoop reads one frame at a time and answers it. It returns when the
// connection fails or is closed: it reads without a context of its own
// (one that can be cancelled costs the library a timer per read), so
// whatever ends the session closes the connection.
func (s *session) readLoop() error {
	// Refusals for going over the rate are themselves limited: a client
	// that keeps being refused is cut, however fast it floods.
	var strikes *rate.Limiter
	for {
		typ, r, err := s.conn.Reader(context.Background())
		if err != nil {
			return err
		}
		// A frame is arriving: only now take a buffer, so that an idle
		// connection holds none.
		pbuf := readPool.Get().(*[]byte)
		buf, err := readFrame((*pbuf)[:0], r, s.srv.cfg.MaxMessageBytes)
		if err != nil && !errors.Is(err, errTooLarge) {
			putReadBuf(pbuf, buf)
			return err
		}
		if !s.limiter.Allow() {
			putReadBuf(pbuf, buf)
			if strikes == nil {
				strikes = rate.NewLimiter(rate.Every(strikeWindow/maxStrikes), maxStrikes)
			}
			if !strikes.Allow() {
				s.close(websocket.StatusPolicyViolation, "rate limit exceeded")
				return errors.New("rate limit exceeded")
			}
			s.refuse(nil, CodeRateLimited, "too many messages: slow down")
			continue
		}
		switch {
		case typ != websocket.MessageText:
			s.refuse(nil, CodeBinaryFrame, "binary messages are not part of the protocol: send JSON text")
		case err != nil:
			s.refuse(nil, CodeTooLarge, fmt.Sprintf("a message may have at most %d bytes", s.srv.cfg.MaxMessageBytes))
		default:
			s.handle(buf)
		}
		putReadBuf(pbuf, buf)
	}
}

// readPool holds the buffers frames are read into.
var readPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// putReadBuf returns buf, grown from *p, to readPool unless it grew past
// the size of a normal message.
func putReadBuf(p *[]byte, buf []byte) {
	if cap(buf) <= 64<<10+512 {
		*p = buf[:0]
		readPool.Put(p)
	}
}

var errTooLarge = errors.New("message too large")

// readFrame reads a whole frame into buf. Past max bytes it drains the rest
// of the frame (bounded by the connection's read limit) and reports
// errTooLarge, so that the connection stays usable.
func readFrame(buf []byte, r io.Reader, max int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) > max {
				if _, err := io.Copy(io.Discard, r); err != nil {
					return buf, err
				}
				return buf, errTooLarge
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) > max {
				return buf, errTooLarge
			}
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// send queues a message for the client. A client too slow to take its
// messages is cut rather than allowed to hold memory.
func (s *session) send(msg []byte) {
	s.qmu.Lock()
	if s.full {
		s.qmu.Unlock()
		return
	}
	if s.queue == nil {
		s.queue = getOutbox()
	} else if s.queue.len() >= outQueue {
		s.full = true
		s.qmu.Unlock()
		s.close(websocket.StatusPolicyViolation, "too slow to receive messages")
		return
	}
	s.queue.add(msg)
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *session) writeLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
		if err := s.flush(); err != nil {
			// The read loop ends with the connection.
			s.conn.CloseNow()
			return
		}
	}
}

// flush writes what is queued, batch after batch, until nothing is left.
// A batch under way is finished even when the session ends, so that a
// close frame queued behind it is not lost.
func (s *session) flush() error {
	for {
		s.qmu.Lock()
		batch := s.queue
		s.queue = nil
		s.qmu.Unlock()
		if batch == nil {
			return nil
		}
		err := s.writeBatch(batch)
		putOutbox(batch)
		if err != nil {
			return err
		}
	}
}

// writeBatch writes the messages of b as WebSocket frames, all in one
// write to the network (wireConn). The frames get no context of their
// own: the wire's write deadline bounds them.
func (s *session) writeBatch(b *outbox) error {
	s.wire.cork()
	err := b.each(func(msg []byte) error {
		return s.conn.Write(context.Background(), websocket.MessageText, msg)
	})
	if uerr := s.wire.uncork(); err == nil {
		err = uerr
	}
	return err
}

func (s *session) pingLoop() {
	t := time.NewTicker(s.srv.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.PongTimeout)
			err := s.conn.Ping(ctx)
			cancel()
			if err != nil {
				if s.ctx.Err() == nil {
					s.srv.cfg.Logger.Debug("no pong: closing", "conn", s.key.Key(), "ip", s.ip)
				}
				s.conn.CloseNow()
				s.cancel()
				return
			}
		}
	}
}

// close ends the connection with a close frame giving the reason. It does
// not wait for the peer's answer beyond the library's own bound.
func (s *session) close(code websocket.StatusCode, reason string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closedWith = code
		if !s.ended {
			s.closing.Go(func() { s.conn.Close(code, reason) })
		}
	})
}

// refuse sends a negative reply and counts it.
func (s *session) refuse(id *uint64, code room.Code, msg string) {
	s.srv.cfg.Metrics.Errors.WithLabelValues(string(code)).Inc()
	s.send(encode(errorReply{header: header{Re: id, Type: "error"}, Error: errorBody{Code: code, Message: msg}}))
}

// attached returns the session's current membership, or nil.
func (s *session) attached() *attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.att
}
