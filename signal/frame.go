package signal

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// The server reads its clients' WebSocket frames itself (RFC 6455, section
// 5) rather than through a library's blocking reader: frameReader takes
// whatever bytes the socket gave, however they are cut, and says what they
// make, without ever waiting for more. So a connection with nothing to
// read holds no goroutine inside a reader, and a whole frame that arrived
// in one read is unmasked where it lies and handled without a copy.

// Opcodes (section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// finBit marks the last frame of a message.
const finBit = 0x80

// maxControlPayload is the most a control frame may carry (section 5.5).
const maxControlPayload = 125

// closeCode is a WebSocket close status code (section 7.4).
type closeCode uint16

// The close codes the server sends.
const (
	closeNormal          closeCode = 1000
	closeGoingAway       closeCode = 1001
	closeProtocolError   closeCode = 1002
	closeNoStatus        closeCode = 1005 // received only: the close frame had no code
	closeInvalidData     closeCode = 1007
	closePolicyViolation closeCode = 1008
	closeMessageTooBig   closeCode = 1009
)

// valid tells whether a peer may send code in a close frame: the codes
// registered for the wire (RFC 6455, section 7.4, and IANA's registry up
// to 1014) and those for libraries and applications (3000–4999).
func (c closeCode) valid() bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014, c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// inKind is what a call to frameReader.next produced.
type inKind uint8

const (
	inMore     inKind = iota // nothing whole yet: more bytes are needed
	inText                   // a whole text message
	inBinary                 // a whole binary message
	inTooLarge               // a message over the size limit, skipped whole
	inPing                   // a ping, with its payload
	inPong                   // a pong
	inClose                  // a close frame, with its code and reason
)

// frameError is a breach of the protocol by the client: the connection is
// closed with code and reason.
type frameError struct {
	code   closeCode
	reason string
}

func (e *frameError) Error() string { return fmt.Sprintf("websocket: %s (close %d)", e.reason, e.code) }

func protocolError(reason string) error { return &frameError{code: closeProtocolError, reason: reason} }

// frameReader turns a client's bytes into messages and control frames. It
// holds the state of the frame and the message under way between calls;
// a whole message is only gathered into a buffer of its own when it
// spans reads or frames.
type frameReader struct {
	max     int // a message over max bytes is skipped and reported (inTooLarge)
	hardMax int // a message over hardMax bytes ends the connection

	// The header of the next frame, while it comes in pieces.
	hdr  [14]byte
	hdrN int

	// The frame under way (inFrame), its payload bytes still to come,
	// and its masking key, rotated to the next byte's position.
	inFrame bool
	op      byte
	fin     bool
	mask    uint32
	left    uint64

	// The message under way: its opcode (0 when none), its size so far,
	// its bytes when they are gathered (msg) and whether it is skipped.
	msgOp   byte
	msgLen  uint64
	msg     *[]byte
	discard bool

	// The payload of the control frame under way.
	ctl  [maxControlPayload]byte
	ctlN int
}

// next reads from in until it has a whole message or control frame, and
// returns what it is, its payload and how many bytes of in it used; with
// inMore it used all of in. The payload is valid until the next call, and
// only while in is: a whole message that lay in in is unmasked in place
// and returned from there.
func (r *frameReader) next(in []byte) (kind inKind, payload []byte, used int, err error) {
	r.rest()
	for {
		if !r.inFrame {
			n, ok, err := r.header(in[used:])
			used += n
			if err != nil || !ok {
				return inMore, nil, used, err
			}
		}
		rest := in[used:]
		take := int(min(r.left, uint64(len(rest))))
		chunk := rest[:take]
		used += take
		r.left -= uint64(take)
		switch {
		case r.control():
			r.unmask(chunk)
			r.ctlN += copy(r.ctl[r.ctlN:], chunk)
		case r.discard:
		case r.msg == nil && r.fin && r.left == 0:
			// The whole message is here: it is handled where it lies.
			r.unmask(chunk)
			r.inFrame = false
			kind, payload := r.finish(chunk)
			return kind, payload, used, nil
		default:
			if r.msg == nil {
				r.msg = readPool.Get().(*[]byte)
			}
			start := len(*r.msg)
			*r.msg = append(*r.msg, chunk...)
			r.unmask((*r.msg)[start:])
		}
		if r.left > 0 {
			return inMore, nil, used, nil
		}
		r.inFrame = false
		if r.control() {
			kind, payload, err := r.controlFrame()
			return kind, payload, used, err
		}
		if r.fin {
			var whole []byte
			if r.msg != nil {
				whole = *r.msg
			}
			kind, payload := r.finish(whole)
			return kind, payload, used, nil
		}
	}
}

// header reads the next frame's header, all or part of it, from in and
// checks it. It reports how many bytes it took and whether the header is
// whole.
func (r *frameReader) header(in []byte) (used int, ok bool, err error) {
	for r.hdrN < 2 {
		if used == len(in) {
			return used, false, nil
		}
		r.hdr[r.hdrN] = in[used]
		r.hdrN++
		used++
	}
	if r.hdr[1]&0x80 == 0 {
		return used, false, protocolError("client frames must be masked")
	}
	size := 2 + 4
	switch r.hdr[1] & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	n := copy(r.hdr[r.hdrN:size], in[used:])
	r.hdrN += n
	used += n
	if r.hdrN < size {
		return used, false, nil
	}
	r.hdrN = 0
	b0, b1 := r.hdr[0], r.hdr[1]
	r.fin, r.op = b0&finBit != 0, b0&0x0f
	if b0&0x70 != 0 {
		return used, false, protocolError("reserved bits set: no extension was agreed")
	}
	length := uint64(b1 & 0x7f)
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(r.hdr[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(r.hdr[2:10])
		if length>>63 != 0 {
			return used, false, protocolError("frame length out of range")
		}
	}
	r.mask = binary.LittleEndian.Uint32(r.hdr[size-4 : size])
	r.left, r.inFrame = length, true
	switch r.op {
	case opClose, opPing, opPong:
		if !r.fin {
			return used, false, protocolError("control frames cannot be fragmented")
		}
		if length > maxControlPayload {
			return used, false, protocolError("control frame over 125 bytes")
		}
		r.ctlN = 0
		return used, true, nil
	case opText, opBinary:
		if r.msgOp != 0 {
			return used, false, protocolError("a new message began before the last one ended")
		}
		r.msgOp, r.msgLen, r.discard = r.op, 0, false
	case opContinuation:
		if r.msgOp == 0 {
			return used, false, protocolError("continuation frame with no message under way")
		}
	default:
		return used, false, protocolError(fmt.Sprintf("unknown opcode %d", r.op))
	}
	r.msgLen += length
	if r.msgLen > uint64(r.hardMax) {
		return used, false, &frameError{code: closeMessageTooBig, reason: fmt.Sprintf("read limited at %d bytes", r.hardMax+1)}
	}
	if r.msgLen > uint64(r.max) && !r.discard {
		r.discard = true
		r.release()
	}
	return used, true, nil
}

func (r *frameReader) control() bool { return r.op&0x8 != 0 }

// unmask unmasks the next len(b) payload bytes of the frame in place and
// turns the key to the byte after them.
func (r *frameReader) unmask(b []byte) {
	key := r.mask
	if len(b) >= 8 {
		k := uint64(key) | uint64(key)<<32
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= byte(key)
		key = bits.RotateLeft32(key, -8)
	}
	r.mask = key
}

// finish ends the message whose bytes are msg.
func (r *frameReader) finish(msg []byte) (inKind, []byte) {
	kind := inText
	switch {
	case r.discard:
		kind, msg = inTooLarge, nil
	case r.msgOp == opBinary:
		kind = inBinary
	}
	r.msgOp, r.discard = 0, false
	return kind, msg
}

// controlFrame reports the control frame just read.
func (r *frameReader) controlFrame() (inKind, []byte, error) {
	p := r.ctl[:r.ctlN]
	switch r.op {
	case opPing:
		return inPing, p, nil
	case opPong:
		return inPong, p, nil
	}
	if len(p) == 1 {
		return inClose, nil, protocolError("close frame with a one-byte payload")
	}
	if len(p) >= 2 {
		if !closeCode(binary.BigEndian.Uint16(p)).valid() {
			return inClose, nil, protocolError("invalid close code")
		}
		if !utf8.Valid(p[2:]) {
			return inClose, nil, &frameError{code: closeInvalidData, reason: "close reason is not UTF-8"}
		}
	}
	return inClose, p, nil
}

// closeBody is the payload of a close frame with code and reason, the
// reason cut to fit a control frame; closeNoStatus gives an empty one.
func closeBody(code closeCode, reason string) []byte {
	if code == closeNoStatus {
		return []byte{}
	}
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
	}
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return append(b, reason...)
}

// closePayload splits a close frame's payload into its code and reason.
func closePayload(p []byte) (closeCode, string) {
	if len(p) < 2 {
		return closeNoStatus, ""
	}
	return closeCode(binary.BigEndian.Uint16(p)), string(p[2:])
}

// rest gives back the buffer of the message returned last, if it had
// one, as the next call would: so that a connection waiting for more
// holds no buffer.
func (r *frameReader) rest() {
	if r.msgOp == 0 {
		r.release()
	}
}

// release gives back the buffer the message under way or last returned was
// gathered in, if it had one.
func (r *frameReader) release() {
	if r.msg != nil {
		putReadBuf(r.msg, *r.msg)
		r.msg = nil
	}
}
