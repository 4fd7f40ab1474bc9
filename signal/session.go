package signal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

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

// session is one WebSocket connection. One goroutine at a time (readLoop)
// reads, decodes and handles client messages one at a time, and writes its
// own replies before it waits for more; once the client has been silent
// for IdleAfter the session parks in the server's poller and that
// goroutine ends, until data comes. Messages pushed by others start a
// writer goroutine that writes everything queued and ends when nothing is
// left; a timer pings the client now and then. So an idle connection has
// no goroutine and holds no buffer of its own.
type session struct {
	srv    *Server
	wire   *wireConn
	frames frameReader
	// seq numbers the connection on this node (the poller's key);
	// parked is set while the session waits in the poller.
	seq     uint64
	parked  atomic.Bool
	ip      string
	key     room.Conn
	limiter *rate.Limiter
	// strikes limits the refusals for going over the rate: a client that
	// keeps being refused is cut, however fast it floods. It is made at
	// the first refusal. Only the read loop uses it.
	strikes *rate.Limiter

	// qmu guards the outgoing queue: queue holds the messages waiting
	// (nil when there are none); writing is set while a goroutine writes
	// them (at most one does); full is set once the client fell too far
	// behind, the connection failed or the session is closing: from then
	// on nothing more is queued, so that what the client receives before
	// the close frame has no gap. closeFrame is the payload of the close
	// frame to write once the queue is empty. writers counts the writer
	// goroutines.
	qmu        sync.Mutex
	queue      *outbox
	writing    bool
	full       bool
	closeFrame []byte
	writers    sync.WaitGroup
	// taken, when a reader waits on it (awaitWriter), is closed when the
	// writer next takes the queue.
	taken chan struct{}

	// ctx carries the request's host (for ICE servers) and is never
	// cancelled: the session ends by closing its connection, and
	// a cancellable context would keep a map and a channel per session
	// once a first store operation had derived from it.
	ctx context.Context

	// pingTimer pings the client every PingInterval, and cuts the
	// connection when a ping is not answered within PongTimeout.
	pingTimer *time.Timer

	mu sync.Mutex
	// att is the room membership this connection speaks for, if any.
	att *attachment
	// ended is set once the connection is done with.
	ended bool
	// awaitingPong is set while a ping is unanswered.
	awaitingPong bool
	// closedWith is the code of the close frame the server sent or
	// answered with, once it did.
	closedWith closeCode

	// closeOnce guards the closing handshake: the close frame, and the
	// timer (closeTimer) that cuts the connection if the client does not
	// answer it.
	closeOnce  sync.Once
	closeTimer *time.Timer
}

// attachment binds a session to one member of one room.
type attachment struct {
	room, member string
	unsubscribe  func()
	// signalHead starts the bus frame of every signal the member sends.
	signalHead []byte
	// pairHead starts the key of the member's bucket towards each
	// recipient (Server.pairs): "<room>/<member>/".
	pairHead []byte
}

func newSession(srv *Server, wire *wireConn, ip string, seq uint64, key room.Conn) *session {
	return &session{
		srv:     srv,
		wire:    wire,
		seq:     seq,
		frames:  frameReader{max: srv.cfg.MaxMessageBytes, hardMax: srv.cfg.MaxMessageBytes * hardLimitFactor},
		ip:      ip,
		key:     key,
		limiter: rate.NewLimiter(srv.cfg.Rate, srv.cfg.Burst),
	}
}

// start sends the welcome and starts the pings. The server then runs the
// read loop (Server.step), as many times as the session parks in the
// poller, and finish once it ends.
func (s *session) start(parent context.Context) {
	s.ctx = context.WithoutCancel(parent)
	cfg := &s.srv.cfg
	s.mu.Lock() // the timer's goroutine reads pingTimer under mu
	s.pingTimer = time.AfterFunc(cfg.PingInterval, s.ping)
	s.mu.Unlock()
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

// finish records the disconnection and closes the connection.
func (s *session) finish(err error) {
	// Replies to the last messages, a refusal before a cut: a write
	// under way or queued is finished, so that a close frame queued
	// behind it is not lost.
	s.flushOwn()
	s.detach(false)
	s.mu.Lock()
	s.ended = true // no ping or close timer is armed from now on
	s.pingTimer.Stop()
	if s.closeTimer != nil {
		s.closeTimer.Stop()
	}
	s.mu.Unlock()
	s.qmu.Lock()
	s.full = true
	s.qmu.Unlock()
	s.writers.Wait()
	s.unpoll()
	s.wire.Close()
	s.wire.consume(len(s.wire.unread))
	s.frames.release()
	s.srv.cfg.Logger.Debug("session ended", "conn", s.key.Key(), "ip", s.ip, "err", err)
}

// readLoop reads the client's frames and answers them. It returns when
// the connection fails, the client closes it, or the client answers the
// server's close frame; whatever ends the session closes the connection.
func (s *session) readLoop() error {
	for {
		// Replies go out when nothing more is read ahead (a client that
		// sends several messages at once gets their replies in one
		// write), or once ownBatch of them wait (a client that keeps
		// the input busy is not left without them); then the loop waits
		// for more, or parks the session (await).
		if len(s.wire.unread) == 0 {
			s.flushOwn()
			s.frames.rest()
			if err := s.await(); err != nil {
				return err
			}
		} else if s.queued() >= ownBatch {
			s.flushOwn()
			s.awaitWriter()
		}
		kind, payload, used, err := s.frames.next(s.wire.unread)
		if err != nil {
			if fe, ok := errors.AsType[*frameError](err); ok {
				s.close(fe.code, fe.reason)
			}
			return err
		}
		switch kind {
		case inMore:
		case inPing:
			// A ping costs a token like a message; over the rate it is
			// not answered.
			if !s.allow() {
				break
			}
			if err := s.wire.writeControl(opPong, payload); err != nil && !s.closing() {
				s.hangUp()
			}
		case inPong:
			s.ponged()
		case inClose:
			code, _ := closePayload(payload)
			s.close(code, "")
			return &closeError{code}
		default:
			if s.closing() {
				break // the client has yet to read the close frame
			}
			if !s.allow() {
				break
			}
			switch kind {
			case inBinary:
				s.refuse(nil, CodeBinaryFrame, "binary messages are not part of the protocol: send JSON text")
			case inTooLarge:
				s.refuse(nil, CodeTooLarge, fmt.Sprintf("a message may have at most %d bytes", s.srv.cfg.MaxMessageBytes))
			default:
				s.handle(payload)
			}
		}
		s.wire.consume(used)
	}
}

// await waits until data is unread. A session with a poller and a plain
// TCP socket that stays silent for IdleAfter (between half of it and all
// of it, see wireConn.fillWithin) parks instead (errParked).
func (s *session) await() error {
	p := s.srv.poller
	if p == nil || s.wire.raw == nil {
		return s.wire.fill()
	}
	if err := s.wire.fillWithin(s.srv.cfg.IdleAfter); !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if err := s.wire.readNow(); err != nil || len(s.wire.unread) > 0 {
		return err
	}
	if err := p.park(s); err != nil {
		// The session keeps its goroutine (epoll may be out of
		// watches: fs.epoll.max_user_watches).
		s.srv.parkFailed.Do(func() {
			s.srv.cfg.Logger.Warn("idle sessions cannot park; they keep a goroutine each", "err", err)
		})
		if err := s.wire.noReadDeadline(); err != nil {
			return err
		}
		return s.wire.fill()
	}
	return errParked
}

// allow takes a token for a frame from the rate limiter. Without one the
// frame is refused with rate_limited, and a client refused too often is
// cut.
func (s *session) allow() bool {
	if s.limiter.Allow() {
		return true
	}
	if s.strikes == nil {
		s.strikes = rate.NewLimiter(rate.Every(strikeWindow/maxStrikes), maxStrikes)
	}
	if !s.strikes.Allow() {
		s.close(closePolicyViolation, "rate limit exceeded")
		return false
	}
	s.refuse(nil, CodeRateLimited, "too many messages: slow down")
	return false
}

// errParked ends the read loop of a session whose socket is armed in the
// poller: it is resumed, on another goroutine, when data comes.
var errParked = errors.New("parked until data comes")

// closeError ends a session the client closed.
type closeError struct{ code closeCode }

func (e *closeError) Error() string {
	return fmt.Sprintf("websocket: closed by the client (%d)", e.code)
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
		// The queue is dropped: the close frame is what the client gets
		// next.
		s.full = true
		putOutbox(s.queue)
		s.queue = nil
		s.qmu.Unlock()
		s.close(closePolicyViolation, "too slow to receive messages")
		return
	}
	s.queue.add(msg)
	start = start && s.takeWriterRole()
	s.qmu.Unlock()
	if start {
		s.writeInBackground()
	}
}

// takeWriterRole makes the caller the writer, unless a goroutine is. The
// caller holds qmu.
func (s *session) takeWriterRole() bool {
	if s.writing {
		return false
	}
	s.writing = true
	s.writers.Add(1)
	return true
}

// writeInBackground writes what is queued on a writer goroutine of its own,
// for a caller that took the writer's role.
func (s *session) writeInBackground() {
	go func() {
		defer s.writers.Done()
		s.drain()
	}()
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

// awaitWriter waits, when a writer goroutine has the writer's role and
// ownBatch replies or more wait behind it, until the writer takes them: a
// client that keeps the input busy is slowed down to the pace at which it
// reads, rather than taken for a slow reader because the writer had not
// been scheduled yet.
func (s *session) awaitWriter() {
	s.qmu.Lock()
	if !s.writing || s.queue == nil || s.queue.len() < ownBatch {
		s.qmu.Unlock()
		return
	}
	if s.taken == nil {
		s.taken = make(chan struct{})
	}
	taken := s.taken
	s.qmu.Unlock()
	<-taken
}

// wakeReader ends awaitWriter's wait. The caller holds qmu.
func (s *session) wakeReader() {
	if s.taken != nil {
		close(s.taken)
		s.taken = nil
	}
}

// drain writes what is queued, batch after batch, until nothing is left,
// then the close frame if the session is closing, and gives up the
// writer's role. When a write fails the connection is closed, which ends
// the read loop.
func (s *session) drain() {
	for {
		s.qmu.Lock()
		batch, closeFrame := s.queue, s.closeFrame
		s.queue = nil
		s.wakeReader()
		if batch == nil {
			s.closeFrame = nil
			s.writing = false
			s.qmu.Unlock()
			if closeFrame != nil && s.wire.writeControl(opClose, closeFrame) != nil {
				s.hangUp()
			}
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
			s.wakeReader()
			s.qmu.Unlock()
			s.hangUp()
			return
		}
	}
}

// writeBatch writes the messages of b as WebSocket frames, all in one
// write to the network (wireConn). They need no context: the wire's write
// deadline bounds them.
func (s *session) writeBatch(b *outbox) error { return s.wire.writeText(b) }

// ping runs on pingTimer's own goroutine every PingInterval: it pings the
// client, and cuts the connection if the last ping went unanswered for
// PongTimeout.
func (s *session) ping() {
	if s.closing() {
		return // the close timer bounds what is left
	}
	s.mu.Lock()
	ended, unanswered := s.ended, s.awaitingPong
	if !ended && !unanswered {
		s.awaitingPong = true
		s.pingTimer.Reset(s.srv.cfg.PongTimeout)
	}
	s.mu.Unlock()
	switch {
	case ended:
	case unanswered:
		s.srv.cfg.Logger.Debug("no pong: closing", "conn", s.key.Key(), "ip", s.ip)
		s.hangUp()
	default:
		if s.wire.writeControl(opPing, nil) != nil {
			s.hangUp()
		}
	}
}

// ponged notes the client's answer to a ping: the next one is due after
// PingInterval.
func (s *session) ponged() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.awaitingPong && !s.ended {
		s.awaitingPong = false
		s.pingTimer.Reset(s.srv.cfg.PingInterval)
	}
}

// closeWait is how long the client has to answer the close frame before
// the connection is cut.
const closeWait = 5 * time.Second

// close starts the closing handshake: the close frame, with code and
// reason, goes out after what is queued and nothing is queued after it;
// the read loop ends once the client answers, or the connection is cut
// after closeWait. Called when the client's close frame came, it answers
// it (closeNoStatus answers with an empty close frame).
func (s *session) close(code closeCode, reason string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		ended := s.ended
		if !ended {
			s.closedWith = code
			s.closeTimer = time.AfterFunc(closeWait, s.hangUp)
		}
		s.mu.Unlock()
		if ended {
			return
		}
		s.qmu.Lock()
		s.full = true
		s.closeFrame = closeBody(code, reason)
		start := s.takeWriterRole()
		s.qmu.Unlock()
		if start {
			s.writeInBackground()
		}
	})
}

// hangUp ends the connection from any goroutine: the session, wherever it
// waits for data, finds the end and finishes.
func (s *session) hangUp() {
	s.wire.hangUp()
	if p := s.srv.poller; p != nil {
		p.wake(s)
	}
}

// unpoll takes the session out of the poller, if it was ever in it. Only
// the goroutine running the session calls it, before the socket closes.
func (s *session) unpoll() {
	if p := s.srv.poller; p != nil && s.wire.raw != nil {
		p.forget(s)
	}
}

// closing tells whether the server sent, or is about to send, its close
// frame.
func (s *session) closing() bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.closeFrame != nil || s.full
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
