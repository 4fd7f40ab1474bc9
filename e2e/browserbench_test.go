package e2e

// The browser benchmark of docs/benchmarks.md ("Browser"): what a call
// costs each participant's browser, and how long a newcomer waits for the
// first remote audio. Not part of the normal suite; run it as root with
//
//	LEPEERCHAT_BROWSERBENCH=1 go test -count=1 -run BrowserBench -timeout 60m -v ./e2e/
//
// The test re-executes itself inside a new network namespace that has only
// a loopback interface (unshare -n, then ip link set lo up), so every ICE
// pair is 127.0.0.1 ⇄ 127.0.0.1 and nothing leaves the machine; the
// namespace goes away with the process.
//
// Each participant is its own Chromium process (its own --user-data-dir),
// headless, with fake devices and software compositing (--disable-gpu),
// 1280×800. A run of a variant starts four of them, brings them into one
// call with every microphone on, lets it settle, then measures the CPU
// time of each participant's whole process tree (the browser and every
// descendant: renderer, GPU, network, audio and other utility processes),
// utime+stime+cutime+cstime from /proc/<pid>/stat, over a window. The
// variants of a run are measured one after the other, the order
// alternating between runs; the browsers of one variant are closed before
// the next starts.
//
// Variants (LEPEERCHAT_BROWSERBENCH_VARIANTS, comma-separated):
//
//	bare     e2e/testdata/bare: one RTCPeerConnection per peer, microphone
//	         only, remote audio in <audio>, no data channel, no timers, no
//	         UI; signalling through a trivial relay in the test.
//	room     lepeerchat's real room page, entered through the real UI: A
//	         creates the room on the home page and issues an invitation,
//	         B, C and D join by the link; each turns the microphone on with
//	         the page's button and sends one chat message (chat and
//	         speaking indicators on, as shipped). D joins last, timed (see
//	         below).
//
// Diagnostic variants, to find where a difference comes from:
//
//	modules            lepeerchat's call engine (mesh.js, media.js with
//	                   speaking detection, chat.js, default settings)
//	                   driven by e2e/testdata/modules-driver.js, no page UI.
//	room-blurred       room, with nothing focused during the window (no
//	                   blinking caret in the chat box).
//	room-nospeaking    room, with call.js's SpeakingDetector replaced by
//	                   one that does nothing (served by a patching proxy).
//	room-nomiclevel    room, with speaking detection for the remote
//	                   participants only, not the local microphone.
//
// Every variant also reads Chromium's Performance.getMetrics counters of
// each page (layouts, style recalculations, script and task time) at both
// ends of the window, and the CPU of each thread by name.
//
// Join to first remote audio (room variants): A, B and C are in with their
// microphones on and connected; D has the invitation page open with its
// name typed. From D's click on "Join the room" to the first remote audio
// frame, as e2e/testdata/hook.js describes (first synchronization source on
// an audio receiver; the first decoded samples in getStats, the first
// "unmute" of a remote audio track and the time until all three peers are
// heard are reported too).
//
// Settings (environment): LEPEERCHAT_BROWSERBENCH_RUNS (5),
// _SETTLE (20s), _WINDOW (20s), _VARIANTS (bare,room),
// _OUT (a file for every sample, as JSON), _TIMELINE (any value: log the
// joining page's signalling timeline). Without root, or with
// LEPEERCHAT_BROWSERBENCH_NONETNS=1, it runs on the host's loopback.
//
// A run of two variants takes about two minutes: five runs of bare and
// room about ten, with every diagnostic variant about half an hour.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

const (
	benchEnv      = "LEPEERCHAT_BROWSERBENCH"
	benchInNetns  = "LEPEERCHAT_BROWSERBENCH_INNETNS"
	benchNoNetns  = "LEPEERCHAT_BROWSERBENCH_NONETNS"
	benchPeople   = 4
	userHZ        = 100 // the unit of /proc/<pid>/stat times on Linux
	benchJoinWait = 30 * time.Second
)

type benchConfig struct {
	runs     int
	settle   time.Duration
	window   time.Duration
	variants []string
	out      string
}

func benchConfigFromEnv(t *testing.T) benchConfig {
	t.Helper()
	c := benchConfig{runs: 5, settle: 20 * time.Second, window: 20 * time.Second, variants: []string{"bare", "room"}}
	if v := os.Getenv(benchEnv + "_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s_RUNS=%q: want a positive number", benchEnv, v)
		}
		c.runs = n
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"_SETTLE", &c.settle}, {"_WINDOW", &c.window}} {
		if v := os.Getenv(benchEnv + d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x < 0 {
				t.Fatalf("%s%s=%q: want a duration", benchEnv, d.name, v)
			}
			*d.to = x
		}
	}
	if v := os.Getenv(benchEnv + "_VARIANTS"); v != "" {
		c.variants = nil
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if _, ok := benchVariants[name]; !ok {
				t.Fatalf("%s_VARIANTS: unknown variant %q", benchEnv, name)
			}
			c.variants = append(c.variants, name)
		}
	}
	c.out = os.Getenv(benchEnv + "_OUT")
	return c
}

func TestBrowserBench(t *testing.T) {
	if os.Getenv(benchEnv) == "" {
		t.Skipf("a benchmark: set %s=1 to run it (see docs/benchmarks.md, Browser)", benchEnv)
	}
	if _, err := exec.LookPath(chromiumPath()); err != nil {
		t.Fatalf("no browser at %s: %v", chromiumPath(), err)
	}
	if os.Getenv(benchInNetns) == "" && os.Getenv(benchNoNetns) == "" {
		if os.Geteuid() == 0 {
			benchReexecInNetns(t)
			return
		}
		t.Logf("not root: running on the host's loopback, not in a network namespace")
	}
	cfg := benchConfigFromEnv(t)
	t.Logf("runs %d, settle %s, window %s, variants %s", cfg.runs, cfg.settle, cfg.window, strings.Join(cfg.variants, ","))

	var results []benchResult
	for run := 1; run <= cfg.runs; run++ {
		order := slices.Clone(cfg.variants)
		if run%2 == 0 {
			slices.Reverse(order)
		}
		for _, name := range order {
			var r benchResult
			t.Run(fmt.Sprintf("%s/run%d", name, run), func(t *testing.T) {
				r = runBenchVariant(t, name, run, cfg)
			})
			if r.Variant == "" {
				// Go on with the other runs (a loaded machine makes a wait
				// time out now and then); the test fails at the end.
				t.Errorf("%s, run %d failed: left out of the figures", name, run)
				continue
			}
			results = append(results, r)
		}
	}
	t.Log("\n" + benchReport(results, cfg))
	if cfg.out != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(cfg.out, b, 0o644); err != nil {
			t.Errorf("write %s: %v", cfg.out, err)
		}
	}
}

// benchReexecInNetns runs this test again in a new network namespace with
// only the loopback interface up, and fails if it fails.
func benchReexecInNetns(t *testing.T) {
	t.Helper()
	sub := ""
	if f := flag.Lookup("test.run"); f != nil {
		if i := strings.Index(f.Value.String(), "/"); i >= 0 {
			sub = f.Value.String()[i:]
		}
	}
	args := []string{"-n", "sh", "-c", `ip link set lo up && exec "$0" "$@"`, os.Args[0]}
	for i := 1; i < len(os.Args); i++ {
		a := strings.Replace(os.Args[i], "--", "-", 1)
		switch {
		case a == "-test.run":
			i++ // and its value
		case strings.HasPrefix(a, "-test.run="):
		default:
			args = append(args, os.Args[i])
		}
	}
	args = append(args, "-test.run=^TestBrowserBench$"+sub)
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), benchInNetns+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Logf("re-executing in a loopback-only network namespace: unshare %s", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		t.Fatalf("the benchmark in its network namespace: %v", err)
	}
}

// --- results ----------------------------------------------------------

// benchResult is one run of one variant.
type benchResult struct {
	Variant string  `json:"variant"`
	Run     int     `json:"run"`
	WindowS float64 `json:"windowS"`
	// CPU of each participant's process tree, in % of one core.
	CPU []float64 `json:"cpu"`
	// By process kind (browser, renderer, gpu, network, audio, …), summed
	// over the participants and divided by their number: % of one core.
	ByKind map[string]float64 `json:"byKind"`
	// By process kind and thread name ("renderer/CrRendererMain"), the
	// same way.
	ByThread map[string]float64 `json:"byThread"`
	// The test process (server, relay, chromedp) in % of one core; the
	// rest of the machine (other processes) in % of one core.
	TestProcess float64 `json:"testProcess"`
	Others      float64 `json:"others"`
	LoadAvg     string  `json:"loadavg"`
	// What the page's main thread did during the window, per participant:
	// Chromium's Performance.getMetrics counters (LayoutCount,
	// RecalcStyleCount; ScriptDuration, TaskDuration… in seconds).
	Page map[string]float64 `json:"page"`
	// Join to first remote audio (room variant), in ms; zero when not timed.
	Join benchJoin `json:"join"`
}

type benchJoin struct {
	Packet    float64 `json:"packetMs"`
	PacketAll float64 `json:"packetAllMs"`
	Samples   float64 `json:"samplesMs"`
	Unmute    float64 `json:"unmuteMs"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchReport renders the results as Markdown, for docs/benchmarks.md.
func benchReport(results []benchResult, cfg benchConfig) string {
	var b strings.Builder
	byVariant := map[string][]benchResult{}
	for _, r := range results {
		byVariant[r.Variant] = append(byVariant[r.Variant], r)
	}
	fmt.Fprintf(&b, "CPU per participant, %% of one core (%d people, microphones on, %s window after %s settling)\n\n", benchPeople, cfg.window, cfg.settle)
	fmt.Fprintf(&b, "| Variant | runs: mean of the %d participants | median per participant (P1…P%d) | median | others on the machine | test process |\n|---|---|---|---:|---:|---:|\n", benchPeople, benchPeople)
	medians := map[string]float64{}
	for _, v := range cfg.variants {
		rs := byVariant[v]
		var means, all, others, self []float64
		per := make([][]float64, benchPeople)
		for _, r := range rs {
			sum := 0.0
			for i, c := range r.CPU {
				sum += c
				all = append(all, c)
				per[i] = append(per[i], c)
			}
			means = append(means, sum/float64(len(r.CPU)))
			others = append(others, r.Others)
			self = append(self, r.TestProcess)
		}
		var perMed []string
		for _, p := range per {
			perMed = append(perMed, fmt.Sprintf("%.1f", median(p)))
		}
		var runs []string
		for _, m := range means {
			runs = append(runs, fmt.Sprintf("%.1f", m))
		}
		medians[v] = median(all)
		fmt.Fprintf(&b, "| %s | %s | %s | **%.1f** | %.0f | %.1f |\n", v, strings.Join(runs, ", "), strings.Join(perMed, ", "), medians[v], median(others), median(self))
	}
	if bare, ok := medians["bare"]; ok && bare > 0 {
		b.WriteString("\n")
		for _, v := range cfg.variants {
			if v != "bare" {
				fmt.Fprintf(&b, "%s / bare = **%.2f×** (medians of all participant samples)\n", v, medians[v]/bare)
			}
		}
	}
	// Where it goes: by process kind.
	kinds := map[string]bool{}
	for _, r := range results {
		for k := range r.ByKind {
			kinds[k] = true
		}
	}
	var kindList []string
	for k := range kinds {
		kindList = append(kindList, k)
	}
	sort.Strings(kindList)
	fmt.Fprintf(&b, "\nBy process, median over runs of the mean per participant, %% of one core\n\n| Variant | %s |\n|---|%s\n", strings.Join(kindList, " | "), strings.Repeat("---:|", len(kindList)))
	for _, v := range cfg.variants {
		var cells []string
		for _, k := range kindList {
			var xs []float64
			for _, r := range byVariant[v] {
				xs = append(xs, r.ByKind[k])
			}
			cells = append(cells, fmt.Sprintf("%.1f", median(xs)))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", v, strings.Join(cells, " | "))
	}
	// What the page's main thread did.
	fmt.Fprintf(&b, "\nThe page's main thread during the window (Performance.getMetrics), median over runs of the mean per participant; durations are wall-clock, so they swell when the machine is loaded: trust the counts\n\n| Variant | layouts | style recalcs | script ms | layout + style ms | all tasks ms |\n|---|---:|---:|---:|---:|---:|\n")
	for _, v := range cfg.variants {
		med := func(f func(m map[string]float64) float64) float64 {
			var xs []float64
			for _, r := range byVariant[v] {
				xs = append(xs, f(r.Page))
			}
			return median(xs)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %.0f | %.0f |\n", v,
			med(func(m map[string]float64) float64 { return m["LayoutCount"] }),
			med(func(m map[string]float64) float64 { return m["RecalcStyleCount"] }),
			med(func(m map[string]float64) float64 { return m["ScriptDuration"] * 1000 }),
			med(func(m map[string]float64) float64 { return (m["LayoutDuration"] + m["RecalcStyleDuration"]) * 1000 }),
			med(func(m map[string]float64) float64 { return m["TaskDuration"] * 1000 }))
	}
	// And by thread: the busiest thread names, by the largest median.
	threadMed := map[string]map[string]float64{}
	for _, v := range cfg.variants {
		names := map[string]bool{}
		for _, r := range byVariant[v] {
			for k := range r.ByThread {
				names[k] = true
			}
		}
		threadMed[v] = map[string]float64{}
		for k := range names {
			var xs []float64
			for _, r := range byVariant[v] {
				xs = append(xs, r.ByThread[k])
			}
			threadMed[v][k] = median(xs)
		}
	}
	top := map[string]float64{}
	for _, m := range threadMed {
		for k, x := range m {
			top[k] = max(top[k], x)
		}
	}
	var threads []string
	for k := range top {
		threads = append(threads, k)
	}
	sort.Slice(threads, func(i, j int) bool { return top[threads[i]] > top[threads[j]] })
	if len(threads) > 16 {
		threads = threads[:16]
	}
	fmt.Fprintf(&b, "\nBusiest threads (process/thread name), median over runs of the mean per participant, %% of one core\n\n| Thread | %s |\n|---|%s\n", strings.Join(cfg.variants, " | "), strings.Repeat("---:|", len(cfg.variants)))
	for _, k := range threads {
		var cells []string
		for _, v := range cfg.variants {
			cells = append(cells, fmt.Sprintf("%.1f", threadMed[v][k]))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", k, strings.Join(cells, " | "))
	}
	for _, v := range cfg.variants {
		var packet, all, samples, unmute []float64
		for _, r := range byVariant[v] {
			if r.Join.Packet > 0 {
				packet = append(packet, r.Join.Packet)
				all = append(all, r.Join.PacketAll)
				samples = append(samples, r.Join.Samples)
				unmute = append(unmute, r.Join.Unmute)
			}
		}
		if len(packet) == 0 {
			continue
		}
		f := func(xs []float64) string {
			var s []string
			for _, x := range xs {
				s = append(s, fmt.Sprintf("%.0f", x))
			}
			return strings.Join(s, ", ")
		}
		fmt.Fprintf(&b, "\nJoin to first remote audio (%s), ms from the click on \"Join the room\"\n\n| Measure | runs | median |\n|---|---|---:|\n", v)
		fmt.Fprintf(&b, "| first audio frame (first synchronization source on an audio receiver) | %s | **%.0f** |\n", f(packet), median(packet))
		fmt.Fprintf(&b, "| all three peers heard | %s | %.0f |\n", f(all), median(all))
		fmt.Fprintf(&b, "| first decoded samples (getStats totalSamplesReceived > 0, 50 ms polling) | %s | %.0f |\n", f(samples), median(samples))
		fmt.Fprintf(&b, "| first remote audio track unmute | %s | %.0f |\n", f(unmute), median(unmute))
	}
	return b.String()
}

// --- CPU of process trees ---------------------------------------------

// procStat is what /proc/<pid>/stat says of one process.
type procStat struct {
	ppid  int
	ticks int64 // utime + stime + cutime + cstime
}

// readProcs reads every process's parent and CPU time.
func readProcs() (map[int]procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make(map[int]procStat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var ticks int64
		for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			n, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += n
		}
		out[pid] = procStat{ppid: ppid, ticks: ticks}
	}
	return out, nil
}

// tree lists root and all its descendants.
func tree(procs map[int]procStat, root int) []int {
	children := map[int][]int{}
	for pid, s := range procs {
		children[s.ppid] = append(children[s.ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if _, ok := procs[p]; !ok {
			continue
		}
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}

// procKind names a Chromium process by its --type (and utility sub-type).
func procKind(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "gone"
	}
	typ, sub := "", ""
	// Chromium rewrites its command line: arguments may be separated by
	// spaces rather than NULs.
	for _, a := range strings.FieldsFunc(string(b), func(r rune) bool { return r == 0 || r == ' ' }) {
		if v, ok := strings.CutPrefix(a, "--type="); ok {
			typ = v
		}
		if v, ok := strings.CutPrefix(a, "--utility-sub-type="); ok {
			sub = v
		}
	}
	switch {
	case typ == "":
		return "browser"
	case typ == "gpu-process":
		return "gpu"
	case typ == "utility":
		switch {
		case strings.Contains(sub, "audio"):
			return "audio"
		case strings.Contains(sub, "network"):
			return "network"
		case strings.Contains(sub, "storage"):
			return "storage"
		default:
			return "utility"
		}
	default:
		return typ // renderer, zygote, …
	}
}

// threadStat is one thread's name and CPU time (utime + stime).
type threadStat struct {
	pid   int
	name  string
	ticks int64
}

// readThreads reads the threads of a process.
func readThreads(pid int) map[int]threadStat {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := map[int]threadStat{}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(string(b[j+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		// Numbered workers ("ThreadPoolForeg3") count as one name.
		name := strings.TrimRightFunc(string(b[i+1:j]), func(r rune) bool { return r >= '0' && r <= '9' })
		if tid == pid {
			name = "main" // named after the program
		}
		out[tid] = threadStat{name: name, ticks: u + st}
	}
	return out
}

// machineTicks is the whole machine's busy and total CPU time, in ticks.
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, s := range f[1:] {
		n, _ := strconv.ParseInt(s, 10, 64)
		if i >= 8 { // guest times are already in user
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// cpuSnapshot is the CPU time of each participant's tree at one instant.
type cpuSnapshot struct {
	at      time.Time
	perPid  map[int]int64      // every process in any tree
	threads map[int]threadStat // by thread id, of every process in any tree
	kindOf  map[int]string
	owner   map[int]int // pid → participant index
	self    int64
	busy    int64
	machine int64
}

func snapshot(roots []int) (cpuSnapshot, error) {
	s := cpuSnapshot{at: time.Now(), perPid: map[int]int64{}, threads: map[int]threadStat{}, kindOf: map[int]string{}, owner: map[int]int{}}
	procs, err := readProcs()
	if err != nil {
		return s, err
	}
	for i, root := range roots {
		pids := tree(procs, root)
		if len(pids) == 0 {
			return s, fmt.Errorf("participant %d: browser process %d is gone", i+1, root)
		}
		for _, pid := range pids {
			s.perPid[pid] = procs[pid].ticks
			s.owner[pid] = i
			s.kindOf[pid] = procKind(pid)
			for tid, th := range readThreads(pid) {
				th.pid = pid
				s.threads[tid] = th
			}
		}
	}
	s.self = procs[os.Getpid()].ticks
	s.busy, s.machine = machineTicks()
	return s, nil
}

// cpuMeasure is the CPU of one window, in % of one core.
type cpuMeasure struct {
	per      []float64          // each participant's process tree
	byKind   map[string]float64 // by process kind, mean per participant
	byThread map[string]float64 // by process kind and thread name, mean per participant
	self     float64            // the test process
	others   float64            // every other process on the machine
}

// measureCPU measures the CPU of the process trees rooted at roots over
// window.
func measureCPU(roots []int, window time.Duration) (cpuMeasure, error) {
	var m cpuMeasure
	a, err := snapshot(roots)
	if err != nil {
		return m, err
	}
	time.Sleep(window)
	b, err := snapshot(roots)
	if err != nil {
		return m, err
	}
	secs := b.at.Sub(a.at).Seconds()
	pct := func(ticks int64) float64 { return float64(ticks) / userHZ / secs * 100 }
	per := make([]float64, len(roots))
	byKind := map[string]float64{}
	byThread := map[string]float64{}
	for tid, th := range b.threads {
		d := th.ticks - a.threads[tid].ticks
		if d > 0 {
			byThread[b.kindOf[th.pid]+"/"+th.name] += pct(d) / float64(len(roots))
		}
	}
	var ours int64
	for pid, end := range b.perPid {
		// A process born during the window counts from zero; one that died
		// was reaped by its parent, whose cutime/cstime now hold its time.
		d := end - a.perPid[pid]
		if d < 0 {
			d = 0
		}
		per[b.owner[pid]] += pct(d)
		byKind[b.kindOf[pid]] += pct(d) / float64(len(roots))
		ours += d
	}
	// The machine's busy time is in all CPUs' ticks; so are ours.
	selfD := b.self - a.self
	othersTicks := (b.busy - a.busy) - ours - selfD
	return cpuMeasure{per: per, byKind: byKind, byThread: byThread, self: pct(selfD), others: pct(max(othersTicks, 0))}, nil
}

// --- participants as separate browsers --------------------------------

// benchPeer is one participant: a Chromium process of its own.
type benchPeer struct {
	*participant
	pid int
}

// hookJS is e2e/testdata/hook.js.
var hookJS = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(filepath.Join("testdata", "hook.js"))
	return string(b), err
})

// startBenchPeer starts a Chromium process for one participant, with the
// benchmark's hook in every page. It is closed when the test ends.
func startBenchPeer(t *testing.T, srv *server, name string) *benchPeer {
	t.Helper()
	hook, err := hookJS()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "lepeerchat-bench-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	opts := chromiumOptions(chromedp.UserDataDir(dir), chromedp.Flag("allow-loopback-in-peer-connection", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		os.RemoveAll(dir)
	})
	// The first action starts the browser, whose life is bound to the
	// context of that action: ctx, with no timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	start, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Call(start, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: hook}); err != nil {
		t.Fatalf("%s: install the hook: %v", name, err)
	}
	proc := chromedp.FromContext(ctx).Browser.Process()
	if proc == nil {
		t.Fatalf("%s: no browser process", name)
	}
	p := &participant{t: t, name: name, srv: srv, ctx: ctx}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, fmt.Sprintf("%s: %s", m.Type, m))
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s's console:\n\t%s", name, strings.Join(p.console, "\n\t"))
			p.mu.Unlock()
		}
	})
	return &benchPeer{participant: p, pid: proc.Pid}
}

// inboundAudio is what hook.js's __bench.inbound() says: per open peer
// connection, its state and the audio packets and samples received.
type inboundAudio struct {
	State   string  `json:"state"`
	Packets float64 `json:"packets"`
	Samples float64 `json:"samples"`
}

// waitAudioFromAll waits until p has n connected peer connections, each
// receiving audio and playing it out (decoded samples); it returns the
// samples decoded so far.
func (p *benchPeer) waitAudioFromAll(n int, within time.Duration) float64 {
	p.t.Helper()
	deadline := time.Now().Add(within)
	var last []inboundAudio
	for {
		last = eval[[]inboundAudio](p.participant, `window.__bench.inbound()`)
		ok, total := 0, 0.0
		for _, in := range last {
			if in.State == "connected" && in.Packets > 0 && in.Samples > 0 {
				ok++
			}
			total += in.Samples
		}
		if ok >= n {
			return total
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: want audio from %d connected peers, have %+v\n%s", p.name, n, last, p.pageText())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pageMetrics reads the page's main-thread counters (Performance.getMetrics)
// that say what work it does: layouts, style recalculations, script and
// task time.
func (p *benchPeer) pageMetrics() map[string]float64 {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, performance.Enable, performance.EnableParams{}); err != nil {
		p.t.Fatalf("%s: Performance.enable: %v", p.name, err)
	}
	res, err := chromedp.Call(ctx, performance.GetMetrics, cdp.Empty{})
	if err != nil {
		p.t.Fatalf("%s: Performance.getMetrics: %v", p.name, err)
	}
	out := map[string]float64{}
	for _, m := range res.Metrics {
		switch m.Name {
		case "LayoutCount", "RecalcStyleCount", "LayoutDuration", "RecalcStyleDuration", "ScriptDuration", "TaskDuration":
			out[m.Name] = m.Value
		}
	}
	return out
}

// --- variants ---------------------------------------------------------

// benchVariant brings benchPeople participants into one call with their
// microphones on, all receiving each other, and returns them (and the
// join timing, where the variant measures it).
type benchVariant func(t *testing.T) ([]*benchPeer, benchJoin)

var benchVariants = map[string]benchVariant{
	"bare":    bareVariant,
	"modules": modulesVariant,
	"room":    func(t *testing.T) ([]*benchPeer, benchJoin) { return roomVariant(t, roomOptions{}) },
	// Diagnostic "what if" variants: the room page served through a proxy
	// that changes one thing in the client (see the patches below), or
	// with nothing focused during the window.
	"room-nospeaking": func(t *testing.T) ([]*benchPeer, benchJoin) {
		return roomVariant(t, roomOptions{patches: patchNoSpeaking})
	},
	"room-nomiclevel": func(t *testing.T) ([]*benchPeer, benchJoin) {
		return roomVariant(t, roomOptions{patches: patchNoMicLevel})
	},
	"room-blurred": func(t *testing.T) ([]*benchPeer, benchJoin) { return roomVariant(t, roomOptions{blur: true}) },
}

// roomOptions changes the room variant for a diagnosis.
type roomOptions struct {
	patches patch // served instead of the real files
	blur    bool  // take the focus from the chat box once the messages are sent
}

// A patch replaces, in the file served at a path, each old text (which
// must occur exactly once) by a new one.
type patch map[string][][2]string

// patchNoSpeaking turns speaking detection off: a SpeakingDetector that
// never watches anything.
var patchNoSpeaking = patch{"/js/call.js": {{
	"const speaking = new SpeakingDetector();",
	"const speaking = Object.assign(new EventTarget(), { addReceiver() {}, addTrack() {}, remove() {}, close() {} });",
}}}

// patchNoMicLevel keeps speaking detection for the remote participants
// (their receivers' audio levels) but not for the local microphone (an
// AudioContext with an AnalyserNode).
var patchNoMicLevel = patch{"/js/call.js": {{
	"speaking.addTrack(SELF, track);",
	"void 0;",
}}}

// startPatchingProxy serves srv through a proxy on loopback that applies
// patches, and returns a server value whose URL is the proxy's.
func startPatchingProxy(t *testing.T, srv *server, patches patch) *server {
	t.Helper()
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	patched := map[string][]byte{}
	for path, reps := range patches {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("get %s: %v %s", path, err, resp.Status)
		}
		text := string(body)
		for _, r := range reps {
			if n := strings.Count(text, r[0]); n != 1 {
				t.Fatalf("patch of %s: %q occurs %d times, want once (the client changed: update the patch)", path, r[0], n)
			}
			text = strings.Replace(text, r[0], r[1], 1)
		}
		patched[path] = []byte(text)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the server compares the WebSocket's Origin with its Host
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if b, ok := patched[r.URL.Path]; ok {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(b)
			return
		}
		rp.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return &server{URL: "http://" + ln.Addr().String()}
}

func runBenchVariant(t *testing.T, name string, run int, cfg benchConfig) benchResult {
	peers, join := benchVariants[name](t)
	for _, p := range peers {
		p.waitAudioFromAll(benchPeople-1, 30*time.Second)
	}
	for _, p := range peers {
		p.pageMetrics() // enables the counters, outside the window
	}
	time.Sleep(cfg.settle)
	before := make([]float64, len(peers))
	for i, p := range peers {
		before[i] = p.waitAudioFromAll(benchPeople-1, 5*time.Second)
	}
	roots := make([]int, len(peers))
	for i, p := range peers {
		roots[i] = p.pid
	}
	metricsBefore := make([]map[string]float64, len(peers))
	for i, p := range peers {
		metricsBefore[i] = p.pageMetrics()
	}
	load, _ := os.ReadFile("/proc/loadavg")
	m, err := measureCPU(roots, cfg.window)
	if err != nil {
		t.Fatalf("measure CPU: %v", err)
	}
	pageWork := map[string]float64{}
	for i, p := range peers {
		for k, v := range p.pageMetrics() {
			pageWork[k] += (v - metricsBefore[i][k]) / float64(len(peers))
		}
	}
	per, byKind, self, others := m.per, m.byKind, m.self, m.others
	// The call was still on: audio kept flowing to everyone.
	for i, p := range peers {
		if after := p.waitAudioFromAll(benchPeople-1, 5*time.Second); after <= before[i] {
			t.Fatalf("%s: no audio played out during the window (%v → %v samples)", p.name, before[i], after)
		}
	}
	r := benchResult{Variant: name, Run: run, WindowS: cfg.window.Seconds(), CPU: per, ByKind: byKind, ByThread: m.byThread,
		TestProcess: self, Others: others, LoadAvg: strings.TrimSpace(string(load)), Join: join, Page: pageWork}
	var cells []string
	for _, c := range per {
		cells = append(cells, fmt.Sprintf("%.1f", c))
	}
	t.Logf("%s run %d: CPU per participant %s %% of a core; by kind %s; test process %.1f %%, others %.0f %%; load %s; page %s; join %+v",
		name, run, strings.Join(cells, ", "), fmtKinds(byKind), self, others, r.LoadAvg, fmtKinds(pageWork), join)
	return r
}

func fmtKinds(m map[string]float64) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var s []string
	for _, k := range ks {
		s = append(s, fmt.Sprintf("%s %.1f", k, m[k]))
	}
	return strings.Join(s, ", ")
}

// bareVariant: e2e/testdata/bare, signalling through barerelay.
func bareVariant(t *testing.T) ([]*benchPeer, benchJoin) {
	base := startBareServer(t)
	var peers []*benchPeer
	for i := 1; i <= benchPeople; i++ {
		p := startBenchPeer(t, nil, fmt.Sprintf("P%d", i))
		p.open(fmt.Sprintf("%s/bare/?id=P%d", base, i))
		p.waitFor(`document.querySelector("#state")?.textContent === "in"`, "the bare page in the call")
		peers = append(peers, p)
	}
	return peers, benchJoin{}
}

// startBareServer serves e2e/testdata/bare and its relay on loopback and
// returns its base URL.
func startBareServer(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/bare/", http.StripPrefix("/bare/", http.FileServer(http.Dir(filepath.Join("testdata", "bare")))))
	relay := &bareRelay{conns: map[string]*websocket.Conn{}}
	mux.HandleFunc("/bare/ws", relay.serve)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// bareRelay is the bare page's signalling: a newcomer is told who is
// there; {to, data} goes to `to` as {from, data}.
type bareRelay struct {
	mu    sync.Mutex
	conns map[string]*websocket.Conn
}

func (r *bareRelay) serve(w http.ResponseWriter, req *http.Request) {
	id := req.URL.Query().Get("id")
	c, err := websocket.Accept(w, req, nil)
	if err != nil || id == "" {
		return
	}
	defer c.CloseNow()
	ctx := req.Context()
	r.mu.Lock()
	others := []string{}
	for o := range r.conns {
		others = append(others, o)
	}
	r.conns[id] = c
	hello, _ := json.Marshal(map[string]any{"type": "peers", "peers": others})
	err = c.Write(ctx, websocket.MessageText, hello)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, id)
		r.mu.Unlock()
	}()
	for err == nil {
		var b []byte
		_, b, err = c.Read(ctx)
		if err != nil {
			return
		}
		var m struct {
			To   string          `json:"to"`
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal(b, &m) != nil {
			return
		}
		out, _ := json.Marshal(map[string]any{"from": id, "data": m.Data})
		r.mu.Lock()
		if to := r.conns[m.To]; to != nil {
			// Under the lock: one writer per connection at a time.
			to.Write(ctx, websocket.MessageText, out)
		}
		r.mu.Unlock()
	}
}

// modulesVariant: lepeerchat's engine without the page UI.
func modulesVariant(t *testing.T) ([]*benchPeer, benchJoin) {
	driver, err := os.ReadFile(filepath.Join("testdata", "modules-driver.js"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "")
	var peers []*benchPeer
	var roomID string
	for i := 1; i <= benchPeople; i++ {
		name := fmt.Sprintf("P%d", i)
		p := startBenchPeer(t, srv, name)
		p.open("/bench-modules.txt") // a 404: a plain page of the server
		if !eval[bool](p.participant, strings.Replace(string(driver), "/* testKeysJS */", testKeysJS, 1)) {
			t.Fatalf("%s: the driver did not start", name)
		}
		if i == 1 {
			roomID = eval[map[string]string](p.participant, fmt.Sprintf(`M.create("Bench", %q)`, name))["room"]
		} else {
			token := eval[string](peers[0].participant, `M.invite()`)
			eval[map[string]string](p.participant, fmt.Sprintf(`M.join(%q, %q, %q)`, roomID, token, name))
		}
		eval[bool](p.participant, `M.micOn()`)
		peers = append(peers, p)
	}
	for _, p := range peers {
		p.waitAudioFromAll(benchPeople-1, 30*time.Second)
		p.waitFor(`M.mesh.openPeers.length === 3`, "data channels to everyone")
		eval[bool](p.participant, fmt.Sprintf(`M.say("Hello from %s")`, p.name))
	}
	for _, p := range peers {
		p.waitFor(`M.chat.messages.length === 4`, "every chat message")
	}
	return peers, benchJoin{}
}

// roomVariant: the real room page, through the real UI.
func roomVariant(t *testing.T, opts roomOptions) ([]*benchPeer, benchJoin) {
	srv := startServer(t, "")
	if opts.patches != nil {
		srv = startPatchingProxy(t, srv, opts.patches)
	}
	var peers []*benchPeer
	for i := 1; i <= benchPeople; i++ {
		peers = append(peers, startBenchPeer(t, srv, fmt.Sprintf("P%d", i)))
	}
	a := peers[0]
	a.createRoom("Bench", "P1")
	// The call UI mounts a moment after the room page shows: wait for it,
	// lest it move the owner's tools under the click.
	roomWaitCallUI(a)
	link := a.invite(false)
	roomMicOn(a)
	for _, p := range peers[1 : benchPeople-1] {
		p.joinByLink(link, p.name)
		roomMicOn(p)
	}
	for _, p := range peers[:benchPeople-1] {
		p.waitAudioFromAll(benchPeople-2, 30*time.Second)
	}
	// The newcomer, timed: invitation page open, name typed; a moment
	// for the others' call to be steady; then the click.
	d := peers[benchPeople-1]
	d.open(link)
	d.setValue("#join-name", d.name)
	time.Sleep(2 * time.Second)
	eval[bool](d.participant, fmt.Sprintf(`(window.__bench.expect = %d, true)`, benchPeople-1))
	d.click("#join-button")
	ctx, cancel := context.WithTimeout(d.ctx, benchJoinWait+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`window.__bench.done`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(benchJoinWait)))
	if err != nil {
		t.Fatalf("%s: the joined page never heard the others: %v\n%s", d.name, err, d.pageText())
	}
	j := eval[map[string]float64](d.participant, `(B => ({click: B.click, packet: B.packet, packetAll: B.packetAll, samples: B.samples, unmute: B.unmute}))(window.__bench)`)
	since := func(k string) float64 {
		if j[k] == 0 {
			return math.NaN()
		}
		return j[k] - j["click"]
	}
	join := benchJoin{Packet: since("packet"), PacketAll: since("packetAll"), Samples: since("samples"), Unmute: since("unmute")}
	if math.IsNaN(join.Packet) {
		t.Fatalf("%s: no remote audio after joining: %v", d.name, j)
	}
	if os.Getenv(benchEnv+"_TIMELINE") != "" {
		var lines []string
		for _, e := range eval[[][]any](d.participant, `window.__bench.log.map(([t, w]) => [Math.round(t - window.__bench.click), w])`) {
			lines = append(lines, fmt.Sprint(e...))
		}
		t.Logf("%s's join, ms from the click:\n\t%s", d.name, strings.Join(lines, "\n\t"))
	}
	d.waitRoom()
	roomMicOn(d)
	for _, p := range peers {
		roomSay(p, "Hello from "+p.name)
	}
	for _, p := range peers {
		roomWaitChat(p, benchPeople)
	}
	if opts.blur {
		for _, p := range peers {
			eval[bool](p.participant, `(document.activeElement?.blur(), document.activeElement === document.body)`)
		}
	}
	return peers, join
}

// --- the room page's controls -----------------------------------------

// roomWaitCallUI waits until the call module has mounted its controls.
func roomWaitCallUI(p *benchPeer) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null && document.querySelector(%q) !== null`, roomMicButton, roomChatInput), "the call's controls")
}

// roomMicOn turns the microphone on with the room page's button.
func roomMicOn(p *benchPeer) {
	p.t.Helper()
	roomWaitCallUI(p)
	p.click(roomMicButton)
	p.waitFor(roomMicIsOn, "the microphone on")
}

// roomSay sends a chat message through the room page's chat box.
func roomSay(p *benchPeer, text string) {
	p.t.Helper()
	p.setValue(roomChatInput, text)
	p.click(roomChatSend)
}

// roomWaitChat waits until the chat shows n messages.
func roomWaitChat(p *benchPeer, n int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 35*time.Second)
	defer cancel()
	expr := fmt.Sprintf(`document.querySelectorAll(%q).length >= %d`, roomChatMessage, n)
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		p.t.Fatalf("%s: waiting for %d chat messages: %v\n%s", p.name, n, err, p.pageText())
	}
}

// The room page's controls, as web/static/js/call.js makes them.
const (
	roomMicButton   = "#mic-button"
	roomMicIsOn     = `document.querySelector("#mic-button")?.getAttribute("aria-pressed") === "true"`
	roomChatInput   = "#chat-input"
	roomChatSend    = "#chat-send"
	roomChatMessage = "#chat-log li"
)
