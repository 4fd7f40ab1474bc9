package signal

// Messages on the bus start with a tag byte saying what the receiving
// session does with the rest.
const (
	// busClient: forward the rest to the client as it is.
	busClient byte = 'c'
	// busReplaced: the member connected again elsewhere; the rest is the
	// new connection's key. Every other connection of the member detaches.
	busReplaced byte = 'r'
	// busKicked: the member was removed from the room; detach.
	busKicked byte = 'k'
)

func busFrame(tag byte, body []byte) []byte {
	b := make([]byte, 0, 1+len(body))
	return append(append(b, tag), body...)
}

// deliver receives a message sent to this session's member. It runs on the
// sender's goroutine, so it only queues work and never blocks.
func (s *session) deliver(frame []byte) {
	if len(frame) == 0 {
		return
	}
	body := frame[1:]
	switch frame[0] {
	case busClient:
		s.send(body)
	case busReplaced:
		// Whoever replaced it already took its connection out of the
		// room, so the store is left alone.
		if string(body) != s.key.Key() && s.dropAttachment() != nil {
			s.send(encode(header{Type: "session.replaced"}))
		}
	case busKicked:
		// The room no longer has the member: nothing to record.
		if s.dropAttachment() != nil {
			s.send(encode(header{Type: "session.kicked"}))
		}
	}
}

// dropAttachment forgets the session's membership without touching the
// store and returns what it was, or nil.
func (s *session) dropAttachment() *attachment {
	s.mu.Lock()
	att := s.att
	s.att = nil
	s.mu.Unlock()
	if att != nil {
		att.unsubscribe()
		s.srv.cfg.Metrics.Connected.Dec()
	}
	return att
}
