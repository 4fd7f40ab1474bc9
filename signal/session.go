package signal

import (
	"bufio"
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

// session is one WebSocket connection. One goroutine (run) reads, decodes
// and handles client messages one at a time, and writes its own replies
// before it waits for more. Messages pushed by others start a writer
// goroutine that writes everything queued and ends when nothing is left; a
// timer pings the client now and then. So an idle connection has one
// goroutine, blocked reading, and holds no buffer of its own.
type session struct {
	srv  *Server
	conn *websocket.Conn
	wire *wireConn
	br   *bufio.Reader // the library's read-ahead, to see if a frame is waiting
	// brMu orders the read loop's look at br with the close handshake,
	// which reads from br on its own goroutine once brDone is set.
	brMu    sync.Mutex
	brDone  bool
	ip      string
	key     room.Conn
	limiter *rate.Limiter

	// qmu guards the outgoing queue: queue holds the messages waiting
	// (nil when there are none); writing is set while a goroutine writes
	// them (at most one does); full is set once the client fell too far
	// behind or the connection failed: from then on nothing more is
	// queued, so that what the client receives before the close frame has
	// no gap. writers counts the writer goroutines.
	qmu     sync.Mutex
	queue   *outbox
	writing bool
	full    bool
	writers sync.WaitGroup

	// ctx carries the request's host (for ICE servers) and is never
	// cancelled: the session ends by closing its connection, and
	// a cancellable context would keep a map and a channel per session
	// once a first store operation had derived from it.
	ctx context.Context

	// pingTimer starts a ping every PingInterval; pings counts the pings
	// under way.
	pingTimer *time.Timer
	pings     sync.WaitGroup

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

func newSession(srv *Server, conn *websocket.Conn, up *upgradeWriter, ip string, key room.Conn) *session {
	return &session{
		srv:     srv,
		conn:    conn,
		wire:    up.wire,
		br:      up.br,
		ip:      ip,
		key:     key,
		limiter: rate.NewLimiter(srv.cfg.Rate, srv.cfg.Burst),
	}
}

// run serves the connection until it ends, then records the disconnection.
// It is kept small, with start and finish apart, because its frame stays
// on the stack of an idle connection.
func (s *session) run(parent context.Context) {
	s.start(parent)
	err := s.readLoop()
	s.finish(err)
}

func (s *session) start(parent context.Context) {
	s.ctx = context.WithoutCancel(parent)
	cfg := &s.srv.cfg
	s.conn.SetReadLimit(int64(cfg.MaxMessageBytes) * hardLimitFactor)
	s.pingTimer = time.AfterFunc(cfg.PingInterval, s.ping)
	s.reply(encode(welcomeMessage{
		header:   header{Type: "welcome"},
		Version:  Version,
		Features: []string{FeatureQuiet},
		Limits: limitsView{
			MaxMessageBytes: cfg.MaxMessageBytes,
			RatePerSecond:   float64(cfg.Rate),
			Burst:           cfg.Burst,
			MaxNameLength:   room.MaxNameLen,
			MaxMembers:      room.MaxMembers,
		},
	}))
}

func (s *session) finish(err error) {
	// Replies to the last messages, a refusal before a cut: a write
	// under way or queued is finished, so that a close frame queued
	// behind it is not lost.
	s.flushOwn()
	s.detach(false)
	s.pingTimer.Stop()
	s.qmu.Lock()
	s.full = true
	s.qmu.Unlock()
	s.writers.Wait()
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.closing.Wait()
	s.conn.CloseNow()
	s.pings.Wait()
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
		// Replies go out when no other frame is already read ahead (a
		// client that sends several at once gets their replies in one
		// write), or once ownBatch of them wait (a client that keeps
		// the input busy is not left without them); then the loop waits
		// for the next frame high on its stack, so that the stack of an
		// idle connection can shrink.
		if !s.readAhead() {
			s.flushOwn()
			if err := s.wire.fill(); err != nil {
				return err
			}
		} else if s.queued() >= ownBatch {
			s.flushOwn()
		}
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
		} else {
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

// ownBatch is how many replies the read loop lets wait while more frames
// are read ahead; well under outQueue.
const ownBatch = 32

// queued is how many messages wait to be written.
func (s *session) queued() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.queue == nil {
		return 0
	}
	return s.queue.len()
}

// readAhead tells whether the library has read the start of another frame
// already.
func (s *session) readAhead() bool {
	s.brMu.Lock()
	defer s.brMu.Unlock()
	return !s.brDone && (s.br != nil && s.br.Buffered() > 0 || s.wire.buffered() > 0)
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

// send queues a message for the client and makes sure a writer is at
// work. A client too slow to take its messages is cut rather than allowed
// to hold memory.
func (s *session) send(msg []byte) { s.enqueue(msg, true) }

// reply queues a reply on the read loop's goroutine, which writes it
// before it waits for the next message (flushOwn), unless a writer
// goroutine takes it first.
func (s *session) reply(msg []byte) { s.enqueue(msg, false) }

func (s *session) enqueue(msg []byte, start bool) {
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
	start = start && !s.writing
	if start {
		s.writing = true
		s.writers.Add(1)
	}
	s.qmu.Unlock()
	if start {
		go func() {
			defer s.writers.Done()
			s.drain()
		}()
	}
}

// flushOwn writes what is queued on the calling goroutine, unless a
// writer goroutine is already at it.
func (s *session) flushOwn() {
	s.qmu.Lock()
	if s.writing || s.queue == nil {
		s.qmu.Unlock()
		return
	}
	s.writing = true
	s.qmu.Unlock()
	s.drain()
}

// drain writes what is queued, batch after batch, until nothing is left,
// then gives up the writer's role. When a write fails the connection is
// closed, which ends the read loop.
func (s *session) drain() {
	for {
		s.qmu.Lock()
		batch := s.queue
		s.queue = nil
		if batch == nil {
			s.writing = false
			s.qmu.Unlock()
			return
		}
		s.qmu.Unlock()
		err := s.writeBatch(batch)
		putOutbox(batch)
		if err != nil {
			s.qmu.Lock()
			s.full, s.writing = true, false
			if s.queue != nil {
				putOutbox(s.queue)
				s.queue = nil
			}
			s.qmu.Unlock()
			s.conn.CloseNow()
			return
		}
	}
}

// writeBatch writes the messages of b as WebSocket frames, all in one
// write to the network (wireConn). They need no context: the wire's write
// deadline bounds them.
func (s *session) writeBatch(b *outbox) error { return s.wire.writeText(b) }

// ping runs on pingTimer's own goroutine: it pings the client and arms
// the timer again once the pong is back, or closes the connection.
func (s *session) ping() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.pings.Add(1)
	s.mu.Unlock()
	defer s.pings.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.PongTimeout)
	err := s.conn.Ping(ctx)
	cancel()
	if err != nil {
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		if !ended {
			s.srv.cfg.Logger.Debug("no pong: closing", "conn", s.key.Key(), "ip", s.ip)
		}
		s.conn.CloseNow()
		return
	}
	s.pingTimer.Reset(s.srv.cfg.PingInterval)
}

// close ends the connection with a close frame giving the reason. It does
// not wait for the peer's answer beyond the library's own bound.
func (s *session) close(code websocket.StatusCode, reason string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closedWith = code
		if !s.ended {
			s.closing.Go(func() {
				s.brMu.Lock()
				s.brDone = true
				s.brMu.Unlock()
				s.conn.Close(code, reason)
			})
		}
	})
}

// refuse sends a negative reply and counts it. It runs on the read loop.
func (s *session) refuse(id *uint64, code room.Code, msg string) {
	s.srv.cfg.Metrics.Errors.WithLabelValues(string(code)).Inc()
	s.reply(encode(errorReply{header: header{Re: id, Type: "error"}, Error: errorBody{Code: code, Message: msg}}))
}

// attached returns the session's current membership, or nil.
func (s *session) attached() *attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.att
}
