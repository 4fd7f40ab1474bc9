package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The relay benchmarks measure the path a WebRTC signal takes through the
// server: a member's client writes a signal message on its WebSocket, the
// server decodes it, checks the membership, hands it to the bus, queues it
// for the recipient's connection and writes it, and answers the sender
// with "ok" (answered) or not at all (quiet, as the web client sends its
// signals). Both clients are lean coder/websocket connections that reuse
// their buffers and never decode JSON on the hot path, so that the figures
// are the server's (and the loopback's), not the harness's.
//
// Client goroutines carry the pprof label side=client, so a CPU profile
// can be split: go tool pprof -tagignore side=client keeps the server.

// relayFrameSize is the size of the sender's signal message, about an ICE
// candidate with its envelope.
const relayFrameSize = 400

// benchConfig raises the per-connection and per-pair rate limits
// (default 50/s, burst 200; 5/s, burst 100), the per-address connection
// cap, room creation rate and room cap, which a benchmark driving thousands of
// messages per second from 127.0.0.1 would otherwise hit. The limiters
// still run on every message.
func benchConfig(c *Config) {
	c.Rate = 1e9
	c.Burst = 1 << 30
	c.PeerRate, c.PeerBurst = 1e9, 1<<30
	c.CreateRate, c.CreateBurst, c.MaxRooms = 1e9, 1<<30, 1<<30
	c.WideCreateRate, c.WideCreateBurst = 1e9, 1<<30
	c.MaxConnsPerIP = 1 << 16
}

// benchConn is one client connection of a benchmark.
type benchConn struct {
	conn *websocket.Conn
	in   bytes.Buffer // the last message read
	out  []byte
	next uint64 // last id used
}

func dialBench(b *testing.B, ts *testServer) *benchConn {
	b.Helper()
	conn, _, err := websocket.Dial(context.Background(), ts.wsURL(), &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	b.Cleanup(func() { conn.CloseNow() })
	c := &benchConn{conn: conn}
	if r := c.await(b, "welcome", 0); r.Type != "welcome" {
		b.Fatalf("first message %q, want welcome", c.in.Bytes())
	}
	return c
}

// read reads one message into c.in, reusing its memory.
func (c *benchConn) read() error {
	c.in.Reset()
	typ, r, err := c.conn.Reader(context.Background())
	if err != nil {
		return err
	}
	if typ != websocket.MessageText {
		return fmt.Errorf("binary message")
	}
	_, err = c.in.ReadFrom(r)
	return err
}

// benchReply is what the setup needs of a server message; it is decoded
// only outside the timed loop.
type benchReply struct {
	Re   *uint64 `json:"re"`
	Type string  `json:"type"`
	Room struct {
		ID string `json:"id"`
	} `json:"room"`
	Self struct {
		ID string `json:"id"`
	} `json:"self"`
	Invite struct {
		Token string `json:"token"`
	} `json:"invite"`
	Member struct {
		ID string `json:"id"`
	} `json:"member"`
}

// await reads until a message of type typ arrives (with re == id when id is
// not 0), skipping others; an error reply fails the benchmark.
func (c *benchConn) await(b *testing.B, typ string, id uint64) benchReply {
	b.Helper()
	for {
		if err := c.read(); err != nil {
			b.Fatalf("waiting for %s: %v", typ, err)
		}
		var r benchReply
		if err := json.Unmarshal(c.in.Bytes(), &r); err != nil {
			b.Fatalf("server sent %q: %v", c.in.Bytes(), err)
		}
		if id != 0 && r.Re != nil && *r.Re == id && r.Type == "error" {
			b.Fatalf("request %d refused: %s", id, c.in.Bytes())
		}
		if r.Type == typ && (id == 0 || r.Re != nil && *r.Re == id) {
			return r
		}
	}
}

// call sends a request during the setup and returns its reply.
func (c *benchConn) call(b *testing.B, typ string, fields map[string]any) benchReply {
	b.Helper()
	c.next++
	m := map[string]any{"id": c.next, "type": typ}
	for k, v := range fields {
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.conn.Write(context.Background(), websocket.MessageText, data); err != nil {
		b.Fatalf("write %s: %v", typ, err)
	}
	want := typ
	switch typ {
	case "create", "join":
		want = "joined"
	}
	return c.await(b, want, c.next)
}

// relayPair is two members of one room: a signals b.
type relayPair struct {
	a, b *benchConn
	// head and tail frame the sender's message around its id.
	head, tail []byte
	// want is the message b must receive.
	want []byte
	// wantReply is the reply a must receive, rebuilt for each id.
	wantReply []byte
	// quiet: the signals ask for no reply.
	quiet bool
}

// newRelayPair creates a room with two members, each on its own
// connection, and prepares the ~400-byte signal message a sends b, quiet
// or not.
func newRelayPair(b *testing.B, ts *testServer, n int, quiet bool) *relayPair {
	b.Helper()
	a, g := dialBench(b, ts), dialBench(b, ts)
	joined := a.call(b, "create", map[string]any{"room": fmt.Sprintf("bench %d", n), "name": "alice"})
	roomID, aID := joined.Room.ID, joined.Self.ID
	tok := a.call(b, "invite", map[string]any{}).Invite.Token
	bID := g.call(b, "join", map[string]any{"room": roomID, "invite": tok, "name": "bob"}).Self.ID
	if ev := a.await(b, "member.joined", 0); ev.Member.ID != bID {
		b.Fatalf("member.joined names %q, want %q", ev.Member.ID, bID)
	}

	// A trickled candidate as the web client sends it, padded to make the
	// whole frame relayFrameSize bytes with a six-digit id. The server
	// never looks inside data, so only its size matters.
	head := []byte(`{"id":`)
	tail := []byte(`,"type":"signal","to":"` + bID + `",`)
	if quiet {
		tail = append(tail, `"quiet":true,`...)
	}
	tail = append(tail, `"data":{"candidate":{"candidate":"candidate:1467250027 1 udp 1686052607 203.0.113.7 53521 typ srflx raddr 192.168.1.23 rport 53521 generation 0 ufrag 4ZcD network-id 1 network-cost 10","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"4ZcD"},"pad":""}}`...)
	if pad := relayFrameSize - len(head) - 6 - len(tail); pad > 0 {
		i := bytes.LastIndex(tail, []byte(`""`)) + 1
		tail = append(tail[:i:i], append([]byte(strings.Repeat("x", pad)), tail[i:]...)...)
	}
	data := tail[bytes.Index(tail, []byte(`"data":`))+len(`"data":`) : len(tail)-1]
	return &relayPair{
		a: a, b: g, head: head, tail: tail, quiet: quiet,
		want: append(append(signalHead(aID)[1:], data...), '}'),
	}
}

// relay sends one signal from a to b, waits until b has it, then reads
// a's reply unless the signal is quiet. It returns how long the delivery
// to b took.
func (p *relayPair) relay() (time.Duration, error) {
	p.a.next++
	id := p.a.next
	p.a.out = append(strconv.AppendUint(append(p.a.out[:0], p.head...), id, 10), p.tail...)
	start := time.Now()
	if err := p.a.conn.Write(context.Background(), websocket.MessageText, p.a.out); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	if err := p.b.read(); err != nil {
		return 0, fmt.Errorf("recipient: %w", err)
	}
	delivered := time.Since(start)
	if !bytes.Equal(p.b.in.Bytes(), p.want) {
		return 0, fmt.Errorf("recipient got %q, want %q", p.b.in.Bytes(), p.want)
	}
	if p.quiet {
		return delivered, nil
	}
	if err := p.a.read(); err != nil {
		return 0, fmt.Errorf("sender: %w", err)
	}
	p.wantReply = append(strconv.AppendUint(append(p.wantReply[:0], `{"re":`...), id, 10), `,"type":"ok"}`...)
	if !bytes.Equal(p.a.in.Bytes(), p.wantReply) {
		return 0, fmt.Errorf("sender got %q, want %q", p.a.in.Bytes(), p.wantReply)
	}
	return delivered, nil
}

func (p *relayPair) closeNow() {
	p.a.conn.CloseNow()
	p.b.conn.CloseNow()
}

// relayWatchdog fails the benchmark and cuts the pairs' connections, so that
// blocked reads return, when no message went through for a while.
func relayWatchdog(b *testing.B, done *atomic.Uint64, pairs []*relayPair) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		const stall = 10 * time.Second
		t := time.NewTicker(stall)
		defer t.Stop()
		last := done.Load()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if now := done.Load(); now != last {
					last = now
					continue
				}
				b.Errorf("no message relayed for %v", stall)
				for _, p := range pairs {
					p.closeNow()
				}
				return
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// processCPUTime is the process's user plus system CPU time so far.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// labelClient marks the calling goroutine, and those it starts, as the
// benchmark's client side in CPU profiles. It returns the undo.
func labelClient() func() {
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", "client")))
	return func() { pprof.SetGoroutineLabels(context.Background()) }
}

// reportRelay adds the figures every relay benchmark reports.
func reportRelay(b *testing.B, cpu time.Duration, delivered time.Duration) {
	secs := b.Elapsed().Seconds()
	if b.N == 0 || secs == 0 {
		return
	}
	b.ReportMetric(float64(b.N)/secs, "msgs/s")
	b.ReportMetric(float64(delivered.Nanoseconds())/float64(b.N), "deliver-ns/msg")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

// relayKinds are the two kinds of signal the benchmarks send.
var relayKinds = []struct {
	name  string
	quiet bool
}{{"answered", false}, {"quiet", true}}

// BenchmarkRelay sends one signal at a time from one member to another:
// each iteration is the whole exchange (send, delivery to the recipient,
// and "ok" back to the sender when answered). deliver-ns/msg is send →
// recipient has it; cpu-ns/msg is the whole process's CPU (server and
// both clients).
func BenchmarkRelay(b *testing.B) {
	for _, k := range relayKinds {
		b.Run(k.name, func(b *testing.B) { benchmarkRelay(b, k.quiet) })
	}
}

func benchmarkRelay(b *testing.B, quiet bool) {
	ts := startServer(b, "", benchConfig)
	defer labelClient()()
	p := newRelayPair(b, ts, 0, quiet)
	var done atomic.Uint64
	defer relayWatchdog(b, &done, []*relayPair{p})()

	b.ReportAllocs()
	var delivered time.Duration
	cpu0 := processCPUTime()
	for b.Loop() {
		d, err := p.relay()
		if err != nil {
			b.Fatal(err)
		}
		delivered += d
		done.Add(1)
	}
	reportRelay(b, processCPUTime()-cpu0, delivered)
}

// relayParallelism times GOMAXPROCS is the number of pairs, each in its
// own room, that BenchmarkRelayParallel drives at once, each one signal
// at a time.
const relayParallelism = 8

// BenchmarkRelayParallel measures throughput: GOMAXPROCS×8 pairs of
// members, each pair in its own room, relay concurrently.
func BenchmarkRelayParallel(b *testing.B) {
	for _, k := range relayKinds {
		b.Run(k.name, func(b *testing.B) { benchmarkRelayParallel(b, k.quiet) })
	}
}

func benchmarkRelayParallel(b *testing.B, quiet bool) {
	ts := startServer(b, "", benchConfig)
	defer labelClient()()
	pairs := make([]*relayPair, runtime.GOMAXPROCS(0)*relayParallelism)
	for i := range pairs {
		pairs[i] = newRelayPair(b, ts, i, quiet)
	}
	var done, next atomic.Uint64
	defer relayWatchdog(b, &done, pairs)()

	var (
		mu        sync.Mutex
		delivered time.Duration
	)
	b.ReportAllocs()
	b.SetParallelism(relayParallelism)
	b.ResetTimer()
	cpu0 := processCPUTime()
	b.RunParallel(func(pb *testing.PB) {
		p := pairs[next.Add(1)-1]
		var sum time.Duration
		defer func() {
			mu.Lock()
			delivered += sum
			mu.Unlock()
		}()
		for pb.Next() {
			d, err := p.relay()
			if err != nil {
				b.Error(err)
				return
			}
			sum += d
			done.Add(1)
		}
	})
	b.StopTimer()
	reportRelay(b, processCPUTime()-cpu0, delivered)
}
