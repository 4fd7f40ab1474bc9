package main

import (
	"bytes"
	"strings"
)

// tsDigits is the width of the send timestamp embedded in every relayed
// payload: nanoseconds since the generator started, as a quoted string so
// that PeerJS (which parses and re-serialises JSON) keeps every digit.
const tsDigits = 19

var tsKey = []byte(`"lpts":"`)

// candidateBody is a trickled ICE candidate as the web client sends it.
const candidateBody = `"candidate":{"candidate":"candidate:1467250027 1 udp 1686052607 203.0.113.7 53521 typ srflx raddr 192.168.1.23 rport 53521 generation 0 ufrag 4ZcD network-id 1 network-cost 10","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"4ZcD"},`

// shortCandidateBody is a host candidate, for small frames.
const shortCandidateBody = `"candidate":{"candidate":"candidate:842163049 1 udp 2122260223 10.0.0.5 54400 typ host generation 0","sdpMid":"0","sdpMLineIndex":0},`

// sdpLines is the start of a browser's audio+video offer; repeated and cut
// to size, escaped as in JSON.
const sdpLines = `v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:4ZcD\r\na=ice-pwd:2AsknXNHqMZ8DjxFRs4fvlrG\r\na=ice-options:trickle\r\na=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n`

// frame is a prepared message: its bytes with a placeholder for the send
// timestamp at tsOff.
type frame struct {
	b     []byte
	tsOff int
}

type frameKind int

const (
	kindCandidate frameKind = iota
	kindOffer
)

// buildFrame makes the frame target sends to member/peer `to`, padded to
// size bytes (when the envelope allows). A lepeerchat signal is quiet (no
// "ok" when relayed, as the web client sends them) unless acked is set.
func buildFrame(target string, kind frameKind, to string, size int, acked bool) frame {
	var head, body string
	switch target {
	case "peerjs":
		t := "CANDIDATE"
		if kind == kindOffer {
			t = "OFFER"
		}
		head = `{"type":"` + t + `","dst":"` + to + `","payload":{`
	default:
		head = `{"type":"signal","to":"` + to + `",`
		if !acked {
			head += `"quiet":true,`
		}
		head += `"data":{`
	}
	if kind == kindOffer {
		body = `"description":{"type":"offer","sdp":"` + sdpLines + `"},`
	} else {
		body = candidateBody
	}
	ts := string(tsKey) + strings.Repeat("0", tsDigits) + `","pad":"`
	tail := `"}}`
	if kind == kindCandidate && len(head)+len(body)+len(ts)+len(tail) > size {
		body = shortCandidateBody
	}
	fixed := len(head) + len(body) + len(ts) + len(tail)
	pad := size - fixed
	if kind == kindOffer && pad > 0 {
		// Fill an offer with more SDP rather than padding.
		var sb strings.Builder
		for sb.Len() < pad {
			sb.WriteString(`a=candidate-filler:` + strings.Repeat("0", 40) + `\r\n`)
		}
		more := sb.String()[:pad]
		// Do not cut an escape in half.
		for strings.HasSuffix(more, `\`) {
			more = more[:len(more)-1] + "x"
		}
		body = `"description":{"type":"offer","sdp":"` + sdpLines + more + `"},`
		pad = 0
	}
	if pad < 0 {
		pad = 0
	}
	s := head + body + ts + strings.Repeat("x", pad) + tail
	return frame{b: []byte(s), tsOff: strings.Index(s, string(tsKey)) + len(tsKey)}
}

// findTS returns the send timestamp embedded in a received message.
func findTS(msg []byte) (uint64, bool) {
	i := bytes.Index(msg, tsKey)
	if i < 0 {
		return 0, false
	}
	return parseDigits(msg[i+len(tsKey):])
}
