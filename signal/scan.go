package signal

import "unicode/utf8"

// signalMsg is a client signal message as scanSignal finds it: spans of
// the message it was read from, nothing copied.
type signalMsg struct {
	id    uint64
	hasID bool
	to    []byte
	data  []byte // the raw JSON object, forwarded as it is
	quiet bool
}

// idPtr returns the message's id as decode gives it: nil when absent.
func (m *signalMsg) idPtr() *uint64 {
	if !m.hasID {
		return nil
	}
	id := m.id
	return &id
}

// scanSignal reads a signal message, the one message a call sends by the
// hundred, in one pass: it checks the JSON syntax of the whole message and
// notes where id, to and data are, without decoding data. It handles only
// the plain form: the five fields, each once, spelt in lower case, no escape
// in "type" or "to", "id" a plain integer or null, "data" an object,
// "quiet" true, false or null. For
// anything else it reports false, and decode, which knows every rule and
// says what is wrong, takes the message instead; so whatever scanSignal
// accepts, decode accepts with the same meaning (FuzzScanSignal checks it).
func scanSignal(b []byte) (m signalMsg, ok bool) {
	if !utf8.Valid(b) {
		return m, false
	}
	s := jsonScanner{b: b}
	s.ws()
	if !s.byte('{') {
		return m, false
	}
	var seen [5]bool // id, type, to, data, quiet
	s.ws()
	if s.peek() == '}' {
		return m, false
	}
	for {
		s.ws()
		if s.peek() != '"' {
			return m, false
		}
		start, end, esc, ok := s.str()
		if !ok || esc {
			return m, false
		}
		key := b[start:end]
		s.ws()
		if !s.byte(':') {
			return m, false
		}
		s.ws()
		var field int
		switch string(key) {
		case "id":
			field = 0
			if !s.id(&m) {
				return m, false
			}
		case "type":
			field = 1
			if s.peek() != '"' {
				return m, false
			}
			start, end, esc, ok := s.str()
			if !ok || esc || string(b[start:end]) != "signal" {
				return m, false
			}
		case "to":
			field = 2
			if s.peek() != '"' {
				return m, false
			}
			start, end, esc, ok := s.str()
			if !ok || esc || end == start || end-start > maxIDLen {
				return m, false
			}
			m.to = b[start:end]
		case "data":
			field = 3
			if s.peek() != '{' {
				return m, false
			}
			start := s.i
			if !s.value(0) {
				return m, false
			}
			m.data = b[start:s.i]
		case "quiet":
			field = 4
			switch {
			case s.lit("true"):
				m.quiet = true
			case s.lit("false"), s.lit("null"):
			default:
				return m, false
			}
		default:
			return m, false
		}
		if seen[field] {
			return m, false
		}
		seen[field] = true
		s.ws()
		if s.byte(',') {
			continue
		}
		if !s.byte('}') {
			return m, false
		}
		break
	}
	s.ws()
	if s.i != len(b) || !seen[1] || !seen[2] || !seen[3] {
		return m, false
	}
	return m, true
}

// maxScanDepth bounds the nesting scanSignal follows; deeper messages go
// to decode.
const maxScanDepth = 64

// jsonScanner checks JSON syntax (RFC 8259) over b from i. Its input is
// known to be valid UTF-8.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScanner) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string whose opening quote is at i and returns the span of
// its contents and whether it has escapes.
func (s *jsonScanner) str() (start, end int, escaped, ok bool) {
	s.i++
	start = s.i
	b := s.b
	for i := s.i; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return start, i, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return
				}
				i += 6
			default:
				return
			}
		case c < 0x20:
			return
		default:
			i++
		}
	}
	return
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// id reads the value of "id": null, or an integer from 0 to 2^53 written
// without fraction or exponent.
func (s *jsonScanner) id(m *signalMsg) bool {
	if s.lit("null") {
		m.hasID = false
		return true
	}
	start := s.i
	var n uint64
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		n = n*10 + uint64(s.b[s.i]-'0')
		s.i++
		if s.i-start > 16 {
			return false
		}
	}
	digits := s.i - start
	if digits == 0 || digits > 1 && s.b[start] == '0' || n > 1<<53 {
		return false
	}
	switch s.peek() {
	case '.', 'e', 'E':
		return false
	}
	m.id, m.hasID = n, true
	return true
}

func (s *jsonScanner) lit(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// value reads any JSON value starting at i.
func (s *jsonScanner) value(depth int) bool {
	switch c := s.peek(); {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, _, _, ok := s.str()
		return ok
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

func (s *jsonScanner) object(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	s.i++
	s.ws()
	if s.byte('}') {
		return true
	}
	for {
		s.ws()
		if s.peek() != '"' {
			return false
		}
		if _, _, _, ok := s.str(); !ok {
			return false
		}
		s.ws()
		if !s.byte(':') {
			return false
		}
		s.ws()
		if !s.value(depth) {
			return false
		}
		s.ws()
		if s.byte(',') {
			continue
		}
		return s.byte('}')
	}
}

func (s *jsonScanner) array(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	s.i++
	s.ws()
	if s.byte(']') {
		return true
	}
	for {
		s.ws()
		if !s.value(depth) {
			return false
		}
		s.ws()
		if s.byte(',') {
			continue
		}
		return s.byte(']')
	}
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScanner) number() bool {
	s.byte('-')
	switch {
	case s.byte('0'):
	case '1' <= s.peek() && s.peek() <= '9':
		s.digits()
	default:
		return false
	}
	if s.byte('.') && !s.digits() {
		return false
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more decimal digits.
func (s *jsonScanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}
