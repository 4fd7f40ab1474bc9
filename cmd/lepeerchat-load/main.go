// Command lepeerchat-load drives a signalling server over real WebSockets
// on loopback: a lepeerchat server (rooms created, invitations issued,
// members joined, then `signal` messages relayed) or a PeerJS server (the
// same workload in its wire format), at a paced, open-loop aggregate rate
// for a bounded time, or at saturation with a bounded window per pair.
//
// It reports joins/s, relayed messages/s, one-way latency (send time is
// embedded in every payload; sender and receiver are this process, so one
// clock), errors by code, its own CPU and, given the servers' PIDs, their
// CPU per relayed message and RSS per connection.
//
// Only loopback targets are accepted; every phase is bounded in time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	target     string
	urls       []string
	rooms      int
	members    int
	workload   string
	rate       float64
	window     int
	acked      bool
	pacers     int
	warmup     time.Duration
	duration   time.Duration
	settle     time.Duration
	setupConc  int
	setupLimit time.Duration
	pids       []int
	pidNames   []string
	label      string
	serverNote string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "lepeerchat-load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := newRun(cfg)
	if err := r.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "lepeerchat-load:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("lepeerchat-load", flag.ContinueOnError)
	var urls, pids string
	fs.StringVar(&c.target, "target", "lepeerchat", "server kind: lepeerchat or peerjs")
	fs.StringVar(&urls, "url", "ws://127.0.0.1:8080/ws", "comma-separated WebSocket `URLs` (loopback only); with several, members alternate between them (owner on the first)")
	fs.IntVar(&c.rooms, "rooms", 500, "rooms (PeerJS: groups of peers)")
	fs.IntVar(&c.members, "members", 2, "members per room (≤ 64 for lepeerchat)")
	fs.StringVar(&c.workload, "workload", "fixed400", "fixed400 (400-byte messages, member 2k → 2k+1), realistic (~4 KB offers and ~300 B candidates, 1 in 10 an offer, each member → the next one in its room), idle (connect and hold)")
	fs.Float64Var(&c.rate, "rate", 20000, "aggregate offered messages per second, paced (open loop); 0 = saturation (closed loop, -window in flight per sender)")
	fs.IntVar(&c.window, "window", 8, "messages in flight per sender at saturation (-rate 0)")
	fs.BoolVar(&c.acked, "acked", false, "lepeerchat: send signals that the server answers with \"ok\", instead of quiet ones as the web client does (a server that predates quiet signals refuses those)")
	fs.IntVar(&c.pacers, "pacers", 4, "pacing goroutines sharing the senders (open loop)")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "traffic before measuring")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time (max 10m)")
	fs.DurationVar(&c.settle, "settle", 5*time.Second, "idle: wait after connecting before reading the server's RSS")
	fs.IntVar(&c.setupConc, "setup-concurrency", 32, "rooms set up at once")
	fs.DurationVar(&c.setupLimit, "setup-timeout", 3*time.Minute, "give up if connecting and joining takes longer")
	fs.StringVar(&pids, "server-pid", "", "comma-separated `PIDs` of the server processes (name=pid allowed) for CPU and RSS figures")
	fs.StringVar(&c.label, "label", "", "label printed on the RESULT line")
	fs.StringVar(&c.serverNote, "server-note", "", "how the server was configured (e.g. raised rate limits), printed with the results")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch c.target {
	case "lepeerchat", "peerjs":
	default:
		return nil, fmt.Errorf("-target must be lepeerchat or peerjs")
	}
	switch c.workload {
	case "fixed400", "realistic", "idle":
	default:
		return nil, fmt.Errorf("-workload must be fixed400, realistic or idle")
	}
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if err := checkLoopback(u); err != nil {
			return nil, err
		}
		c.urls = append(c.urls, u)
	}
	if len(c.urls) == 0 {
		return nil, fmt.Errorf("-url is required")
	}
	for _, p := range strings.Split(pids, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		name := p
		if i := strings.IndexByte(p, '='); i >= 0 {
			name, p = p[:i], p[i+1:]
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("-server-pid: %v", err)
		}
		c.pids = append(c.pids, n)
		c.pidNames = append(c.pidNames, name)
	}
	if c.rooms <= 0 || c.members <= 0 || c.rooms*c.members > 100000 {
		return nil, fmt.Errorf("-rooms and -members must be positive, at most 100,000 connections")
	}
	if c.target == "lepeerchat" && c.members > 64 {
		return nil, fmt.Errorf("lepeerchat rooms hold at most 64 members")
	}
	if c.duration <= 0 || c.duration > 10*time.Minute || c.warmup < 0 || c.warmup > time.Minute {
		return nil, fmt.Errorf("-duration must be in (0, 10m], -warmup in [0, 1m]")
	}
	if c.rate < 0 || c.window <= 0 || c.pacers <= 0 || c.setupConc <= 0 {
		return nil, fmt.Errorf("-rate ≥ 0, -window, -pacers, -setup-concurrency > 0")
	}
	return c, nil
}

// checkLoopback refuses any URL whose host is not a loopback address.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "ws" {
		return fmt.Errorf("%s: only ws:// on loopback", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: the load generator only targets loopback addresses", raw)
	}
	return nil
}

// serverSample is the servers' CPU and RSS at one moment.
type serverSample struct {
	cpu []time.Duration
	rss []int64
}

func (r *run) sampleServers() serverSample {
	var s serverSample
	for _, pid := range r.cfg.pids {
		c, _ := procCPU(pid)
		m, _ := procRSS(pid)
		s.cpu = append(s.cpu, c)
		s.rss = append(s.rss, m)
	}
	return s
}

func sum[T int64 | time.Duration](xs []T) T {
	var t T
	for _, x := range xs {
		t += x
	}
	return t
}

// results prints the human-readable report and one RESULT line.
type kv struct {
	k, v string
}

func (r *run) printResult(fields []kv) {
	var sb strings.Builder
	sb.WriteString("RESULT")
	if r.cfg.label != "" {
		sb.WriteString(" label=" + r.cfg.label)
	}
	for _, f := range fields {
		sb.WriteString(" " + f.k + "=" + f.v)
	}
	fmt.Println(sb.String())
}

func (r *run) errorSummary() string {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errs) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(r.errs))
	for k := range r.errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, r.errs[k]))
	}
	return strings.Join(parts, ",")
}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }
