package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// peer is one WebSocket connection: a room member (lepeerchat) or a peer
// (PeerJS). Its only goroutine is its reader; pacers write to it.
type peer struct {
	c  *websocket.Conn
	id string // member id / peer id
	// sending side: the frames it cycles through, the window semaphore of
	// saturation mode (released by the receiver).
	frames []frame
	next   int
	sem    chan struct{}
	// receiving side: the semaphore of the member that sends to it.
	inSem chan struct{}
}

type run struct {
	cfg   *config
	epoch time.Time
	peers []*peer
	sends []*peer

	hist      histogram
	winStart  atomic.Int64 // ns since epoch; messages sent in [winStart, winEnd) count
	winEnd    atomic.Int64
	delivered atomic.Uint64 // in window
	sent      atomic.Uint64 // in window
	allRecv   atomic.Uint64
	maxLag    atomic.Int64 // how far a pacer fell behind its schedule, ns
	stopping  atomic.Bool

	errMu sync.Mutex
	errs  map[string]int
}

func newRun(cfg *config) *run {
	r := &run{cfg: cfg, epoch: time.Now(), errs: map[string]int{}}
	r.winStart.Store(1 << 62)
	r.winEnd.Store(1 << 62)
	return r
}

func (r *run) now() int64 { return int64(time.Since(r.epoch)) }

func (r *run) addErr(code string) {
	r.errMu.Lock()
	r.errs[code]++
	r.errMu.Unlock()
}

func (r *run) run(ctx context.Context) error {
	cfg := r.cfg
	n := cfg.rooms * cfg.members
	fmt.Printf("lepeerchat-load: target=%s urls=%v rooms=%d members=%d (%d connections) workload=%s acked=%v rate=%v window=%d duration=%v GOMAXPROCS=%d\n",
		cfg.target, cfg.urls, cfg.rooms, cfg.members, n, cfg.workload, cfg.acked, cfg.rate, cfg.window, cfg.duration, runtime.GOMAXPROCS(0))
	if cfg.serverNote != "" {
		fmt.Println("server:", cfg.serverNote)
	}
	base := r.sampleServers()
	rssSelf0 := selfRSS()

	// Set up: connect, create rooms, invite, join.
	setupCtx, cancel := context.WithTimeout(ctx, cfg.setupLimit)
	t0 := time.Now()
	joins, err := r.setup(setupCtx)
	cancel()
	setupTime := time.Since(t0)
	if err != nil {
		r.closeAll()
		return fmt.Errorf("setup: %w (after %d joins in %v)", err, joins, setupTime.Round(time.Millisecond))
	}
	joinRate := float64(joins) / setupTime.Seconds()
	fmt.Printf("setup: %d connections, %d joins in %v: %.0f joins/s\n", len(r.peers), joins, setupTime.Round(time.Millisecond), joinRate)

	readCtx, stopRead := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for _, p := range r.peers {
		readers.Add(1)
		go func() { defer readers.Done(); r.readLoop(readCtx, p) }()
	}
	hbStop := make(chan struct{})
	var hb sync.WaitGroup
	if cfg.target == "peerjs" {
		hb.Go(func() { r.heartbeats(hbStop) })
	}
	defer func() {
		close(hbStop)
		hb.Wait()
		r.stopping.Store(true)
		r.closeAll()
		stopRead()
		readers.Wait()
	}()

	fields := []kv{{"target", cfg.target}, {"workload", cfg.workload}, {"acked", fmt.Sprint(cfg.acked)}, {"conns", fmt.Sprint(len(r.peers))},
		{"joins_per_s", fmt.Sprintf("%.0f", joinRate)}}

	if cfg.workload == "idle" {
		select {
		case <-time.After(cfg.settle):
		case <-ctx.Done():
			return ctx.Err()
		}
		s := r.sampleServers()
		for i := range cfg.pids {
			per := float64(s.rss[i]-base.rss[i]) / float64(len(r.peers))
			fmt.Printf("server %s: RSS %.1f MB before connecting, %.1f MB with %d idle connections: %.0f B per connection\n",
				cfg.pidNames[i], float64(base.rss[i])/1e6, float64(s.rss[i])/1e6, len(r.peers), per)
		}
		if len(cfg.pids) > 0 {
			per := float64(sum(s.rss)-sum(base.rss)) / float64(len(r.peers))
			fields = append(fields, kv{"base_rss_mb", fmt.Sprintf("%.1f", float64(sum(base.rss))/1e6)},
				kv{"rss_mb", fmt.Sprintf("%.1f", float64(sum(s.rss))/1e6)}, kv{"bytes_per_conn", fmt.Sprintf("%.0f", per)})
		}
		gen := selfRSS()
		fmt.Printf("generator: RSS %.1f MB (%.0f B per connection)\n", float64(gen)/1e6, float64(gen-rssSelf0)/float64(len(r.peers)))
		fields = append(fields, kv{"errors", r.errorSummary()})
		fmt.Println("errors:", r.errorSummary())
		r.printResult(fields)
		return nil
	}

	// Traffic.
	trafficEnd := time.Now().Add(cfg.warmup + cfg.duration)
	var senders sync.WaitGroup
	if cfg.rate > 0 {
		for k := 0; k < cfg.pacers; k++ {
			var mine []*peer
			for i := k; i < len(r.sends); i += cfg.pacers {
				mine = append(mine, r.sends[i])
			}
			if len(mine) == 0 {
				continue
			}
			senders.Go(func() { r.pace(ctx, mine, cfg.rate/float64(cfg.pacers), trafficEnd) })
		}
	} else {
		for _, p := range r.sends {
			senders.Go(func() { r.saturate(ctx, p, trafficEnd) })
		}
	}
	select {
	case <-time.After(cfg.warmup):
	case <-ctx.Done():
	}
	s0, c0, w0 := r.sampleServers(), selfCPU(), time.Now()
	r.winStart.Store(r.now())
	select {
	case <-time.After(cfg.duration):
	case <-ctx.Done():
	}
	r.winEnd.Store(r.now())
	s1, c1, w1 := r.sampleServers(), selfCPU(), time.Now()
	senders.Wait()
	// Let what was sent in the window arrive.
	drain := time.Now().Add(2 * time.Second)
	for time.Now().Before(drain) && r.delivered.Load() < r.sent.Load() {
		time.Sleep(20 * time.Millisecond)
	}
	win := w1.Sub(w0).Seconds()
	sent, got := r.sent.Load(), r.delivered.Load()
	relayed := float64(got) / win
	genCPU := c1 - c0
	fmt.Printf("offered: %.0f msg/s (%d sent in %.2fs), relayed: %.0f msg/s (%d delivered, %d lost or late)\n",
		float64(sent)/win, sent, win, relayed, got, int64(sent)-int64(got))
	p50, p99, p999, mx := r.hist.percentile(0.5), r.hist.percentile(0.99), r.hist.percentile(0.999), time.Duration(r.hist.max.Load())
	fmt.Printf("one-way latency: p50 %s µs, p99 %s µs, p99.9 %s µs, max %s µs\n", us(p50), us(p99), us(p999), us(mx))
	fmt.Printf("generator: CPU %.0f%% of a core, %.2f µs per message; max pacing lag %v\n",
		100*genCPU.Seconds()/win, float64(genCPU)/1e3/float64(max(got, 1)), time.Duration(r.maxLag.Load()).Round(time.Microsecond))
	fields = append(fields, kv{"offered", fmt.Sprintf("%.0f", float64(sent)/win)}, kv{"relayed", fmt.Sprintf("%.0f", relayed)},
		kv{"lost", fmt.Sprint(int64(sent) - int64(got))},
		kv{"p50_us", us(p50)}, kv{"p99_us", us(p99)}, kv{"p999_us", us(p999)}, kv{"max_us", us(mx)},
		kv{"gen_cpu_pct", fmt.Sprintf("%.0f", 100*genCPU.Seconds()/win)})
	if len(cfg.pids) > 0 {
		var tot time.Duration
		for i := range cfg.pids {
			d := s1.cpu[i] - s0.cpu[i]
			tot += d
			fmt.Printf("server %s: CPU %.0f%% of a core, %.2f µs per relayed message; RSS %.1f MB (%.0f B per connection over the base)\n",
				cfg.pidNames[i], 100*d.Seconds()/win, float64(d)/1e3/float64(max(got, 1)), float64(s1.rss[i])/1e6,
				float64(s1.rss[i]-base.rss[i])/float64(len(r.peers)))
		}
		fields = append(fields, kv{"server_cpu_pct", fmt.Sprintf("%.0f", 100*tot.Seconds()/win)},
			kv{"server_us_per_msg", fmt.Sprintf("%.2f", float64(tot)/1e3/float64(max(got, 1)))},
			kv{"server_rss_mb", fmt.Sprintf("%.1f", float64(sum(s1.rss))/1e6)})
	}
	fmt.Println("errors:", r.errorSummary())
	fields = append(fields, kv{"errors", r.errorSummary()})
	r.printResult(fields)
	return nil
}

func selfRSS() int64 {
	n, _ := procRSS(os.Getpid())
	return n
}

func (r *run) closeAll() {
	for _, p := range r.peers {
		if p != nil && p.c != nil {
			p.c.CloseNow()
		}
	}
}

// ---- setup ----

func randID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *run) dial(ctx context.Context, u string) (*websocket.Conn, error) {
	var opts websocket.DialOptions
	if r.cfg.target == "lepeerchat" {
		opts.Subprotocols = []string{"lepeerchat.v1"}
	}
	c, resp, err := websocket.Dial(ctx, u, &opts)
	if err != nil {
		code := "dial"
		if resp != nil {
			code = fmt.Sprintf("http_%d", resp.StatusCode)
		}
		r.addErr(code)
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

// readSetup reads one message during setup (no reader goroutine yet).
func readSetup(ctx context.Context, c *websocket.Conn) ([]byte, error) {
	_, b, err := c.Read(ctx)
	return b, err
}

// lpReply is the part of a lepeerchat reply setup needs.
type lpReply struct {
	Re    *int   `json:"re"`
	Type  string `json:"type"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
	Room *struct {
		ID string `json:"id"`
	} `json:"room"`
	Self *struct {
		ID string `json:"id"`
	} `json:"self"`
	Invite *struct {
		Token string `json:"token"`
	} `json:"invite"`
}

// call sends a request and waits for its reply, skipping pushed messages.
func (r *run) call(ctx context.Context, c *websocket.Conn, id int, req map[string]any) (*lpReply, error) {
	req["id"] = id
	b, _ := json.Marshal(req)
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		return nil, err
	}
	for {
		msg, err := readSetup(ctx, c)
		if err != nil {
			return nil, err
		}
		var rep lpReply
		if err := json.Unmarshal(msg, &rep); err != nil {
			return nil, err
		}
		if rep.Re == nil || *rep.Re != id {
			if rep.Type == "error" && rep.Error != nil {
				r.addErr(rep.Error.Code)
			}
			continue
		}
		if rep.Type == "error" {
			code := "?"
			if rep.Error != nil {
				code = rep.Error.Code
			}
			r.addErr(code)
			return nil, fmt.Errorf("%v: %s", req["type"], code)
		}
		return &rep, nil
	}
}

func (r *run) setup(ctx context.Context) (int, error) {
	cfg := r.cfg
	r.peers = make([]*peer, cfg.rooms*cfg.members)
	var joins atomic.Int64
	var firstErr error
	var errOnce sync.Once
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < cfg.setupConc; w++ {
		wg.Go(func() {
			for room := range work {
				var err error
				if cfg.target == "peerjs" {
					err = r.setupPeerJSGroup(ctx, room, &joins)
				} else {
					err = r.setupRoom(ctx, room, &joins)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("room %d: %w", room, err) })
				}
			}
		})
	}
	for room := 0; room < cfg.rooms && ctx.Err() == nil; room++ {
		if firstErr != nil {
			break
		}
		work <- room
	}
	close(work)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return int(joins.Load()), firstErr
	}
	r.wire()
	return int(joins.Load()), nil
}

func (r *run) urlFor(member int) string { return r.cfg.urls[member%len(r.cfg.urls)] }

func (r *run) setupRoom(ctx context.Context, room int, joins *atomic.Int64) error {
	m := r.cfg.members
	owner, err := r.dial(ctx, r.urlFor(0))
	if err != nil {
		return err
	}
	r.peers[room*m] = &peer{c: owner}
	if _, err := readSetup(ctx, owner); err != nil { // welcome
		return err
	}
	rep, err := r.call(ctx, owner, 1, map[string]any{"type": "create", "room": fmt.Sprintf("load %d", room), "name": "m0"})
	if err != nil {
		return err
	}
	joins.Add(1)
	roomID := rep.Room.ID
	r.peers[room*m].id = rep.Self.ID
	if m == 1 {
		return nil
	}
	inv, err := r.call(ctx, owner, 2, map[string]any{"type": "invite"})
	if err != nil {
		return err
	}
	for j := 1; j < m; j++ {
		c, err := r.dial(ctx, r.urlFor(j))
		if err != nil {
			return err
		}
		r.peers[room*m+j] = &peer{c: c}
		if _, err := readSetup(ctx, c); err != nil {
			return err
		}
		rep, err := r.call(ctx, c, 1, map[string]any{"type": "join", "room": roomID, "invite": inv.Invite.Token, "name": fmt.Sprintf("m%d", j)})
		if err != nil {
			return err
		}
		r.peers[room*m+j].id = rep.Self.ID
		joins.Add(1)
	}
	return nil
}

func (r *run) setupPeerJSGroup(ctx context.Context, group int, joins *atomic.Int64) error {
	m := r.cfg.members
	for j := 0; j < m; j++ {
		id := fmt.Sprintf("lp%d-%d-%s", group, j, randID()[:6])
		u, err := url.Parse(r.urlFor(j))
		if err != nil {
			return err
		}
		q := u.Query()
		q.Set("key", "peerjs")
		q.Set("id", id)
		q.Set("token", randID())
		u.RawQuery = q.Encode()
		c, err := r.dial(ctx, u.String())
		if err != nil {
			return err
		}
		r.peers[group*m+j] = &peer{c: c, id: id}
		msg, err := readSetup(ctx, c)
		if err != nil {
			return err
		}
		if !bytes.Contains(msg, []byte(`"OPEN"`)) {
			r.addErr("peerjs_not_open")
			return fmt.Errorf("peerjs answered %s", msg)
		}
		joins.Add(1)
	}
	return nil
}

// wire decides who sends to whom and prepares the frames.
func (r *run) wire() {
	cfg := r.cfg
	m := cfg.members
	link := func(from, to *peer, frames []frame) {
		from.frames = frames
		if cfg.rate == 0 {
			from.sem = make(chan struct{}, cfg.window)
		}
		to.inSem = from.sem
		r.sends = append(r.sends, from)
	}
	for room := 0; room < cfg.rooms; room++ {
		ps := r.peers[room*m : (room+1)*m]
		switch cfg.workload {
		case "fixed400":
			for j := 0; j+1 < m; j += 2 {
				link(ps[j], ps[j+1], []frame{buildFrame(cfg.target, kindCandidate, ps[j+1].id, 400, cfg.acked)})
			}
		case "realistic":
			if m < 2 {
				continue
			}
			for j := 0; j < m; j++ {
				to := ps[(j+1)%m]
				fs := []frame{buildFrame(cfg.target, kindOffer, to.id, 4096, cfg.acked)}
				for k := 0; k < 9; k++ {
					fs = append(fs, buildFrame(cfg.target, kindCandidate, to.id, 300, cfg.acked))
				}
				link(ps[j], to, fs)
			}
		}
	}
}

// ---- traffic ----

// send writes p's next frame with the current time embedded.
func (r *run) send(ctx context.Context, p *peer) error {
	f := &p.frames[p.next]
	p.next++
	if p.next == len(p.frames) {
		p.next = 0
	}
	t := r.now()
	putDigits(f.b[f.tsOff:f.tsOff+tsDigits], uint64(t))
	if t >= r.winStart.Load() && t < r.winEnd.Load() {
		r.sent.Add(1)
	}
	err := p.c.Write(ctx, websocket.MessageText, f.b)
	if err != nil && !r.stopping.Load() {
		r.addErr("write")
	}
	return err
}

// pace sends to its senders in turn at rate per second until end:
// message i is due at start + i/rate, whatever happened to the previous
// ones (open loop). When late, it catches up without sleeping.
func (r *run) pace(ctx context.Context, senders []*peer, rate float64, end time.Time) {
	start := time.Now()
	var i int64
	next := 0
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		el := now.Sub(start)
		due := dueBy(el, rate)
		if i >= due {
			time.Sleep(dueAt(i, rate) - el)
			continue
		}
		if lag := int64(el - dueAt(i, rate)); lag > r.maxLag.Load() && r.now() >= r.winStart.Load() {
			r.maxLag.Store(lag)
		}
		for ; i < due; i++ {
			p := senders[next]
			next++
			if next == len(senders) {
				next = 0
			}
			if r.send(ctx, p) != nil && ctx.Err() != nil {
				return
			}
		}
	}
}

// saturate keeps up to window messages of p in flight until end.
func (r *run) saturate(ctx context.Context, p *peer, end time.Time) {
	tick := 0
	for ctx.Err() == nil {
		if tick++; tick%64 == 0 && !time.Now().Before(end) {
			return
		}
		select {
		case p.sem <- struct{}{}:
		case <-time.After(time.Until(end)):
			return
		}
		if r.send(ctx, p) != nil {
			return
		}
	}
}

func (r *run) heartbeats(stop chan struct{}) {
	t := time.NewTicker(20 * time.Second)
	defer t.Stop()
	hb := []byte(`{"type":"HEARTBEAT"}`)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, p := range r.peers {
				p.c.Write(context.Background(), websocket.MessageText, hb)
			}
		}
	}
}

var (
	okLP      = []byte(`{"type":"ok"}`)
	errMarker = []byte(`"type":"error"`)
	codeKey   = []byte(`"code":"`)
)

// readLoop reads everything p receives into one reused buffer. Deliveries
// are recognised by the embedded timestamp, without decoding JSON.
func (r *run) readLoop(ctx context.Context, p *peer) {
	buf := make([]byte, 0, 512)
	for {
		_, rd, err := p.c.Reader(ctx)
		if err != nil {
			if !r.stopping.Load() && ctx.Err() == nil {
				if s := websocket.CloseStatus(err); s != -1 {
					r.addErr(fmt.Sprintf("close_%d", s))
				} else {
					r.addErr("read")
				}
			}
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if !r.stopping.Load() && ctx.Err() == nil {
					r.addErr("read")
				}
				return
			}
		}
		r.classify(p, buf)
	}
}

func (r *run) classify(p *peer, msg []byte) {
	if ts, ok := findTS(msg); ok {
		r.allRecv.Add(1)
		if p.inSem != nil {
			select {
			case <-p.inSem:
			default:
			}
		}
		t := int64(ts)
		if t >= r.winStart.Load() && t < r.winEnd.Load() {
			r.hist.record(time.Duration(r.now() - t))
			r.delivered.Add(1)
		}
		return
	}
	if bytes.Equal(msg, okLP) || bytes.HasPrefix(msg, []byte(`{"re":`)) && bytes.HasSuffix(msg, []byte(`"type":"ok"}`)) {
		return // the answer to an -acked signal
	}
	if bytes.Contains(msg, errMarker) {
		code := "error"
		if i := bytes.Index(msg, codeKey); i >= 0 {
			rest := msg[i+len(codeKey):]
			if j := bytes.IndexByte(rest, '"'); j >= 0 {
				code = string(rest[:j])
			}
		}
		r.addErr(code)
		return
	}
	if r.cfg.target == "peerjs" {
		// ERROR, ID-TAKEN, INVALID-KEY, EXPIRE, LEAVE: count by type.
		for _, t := range []string{"ERROR", "ID-TAKEN", "INVALID-KEY", "EXPIRE", "LEAVE"} {
			if bytes.Contains(msg, []byte(`"type":"`+t+`"`)) {
				r.addErr("peerjs_" + t)
				return
			}
		}
	}
	// Pushed room events (member.joined, ...): ignored.
}
