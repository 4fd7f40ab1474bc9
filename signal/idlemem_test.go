package signal

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
)

// TestIdleMemoryProfile is a diagnostic, skipped unless
// LEPEERCHAT_IDLE_PROFILE names a folder: it serves the signal server on
// 127.0.0.1 (the address goes to <folder>/url), waits until
// LEPEERCHAT_IDLE_CONNS (default 10,000) connections are open, for example
// from the load generator in another process:
//
//	lepeerchat-load -workload idle -rooms 1000 -members 10 -settle 30s -url $(cat <folder>/url)
//
// then, after a few seconds and two collections, writes a heap profile to
// <folder>/heap.pprof and prints what each connection holds. With
// LEPEERCHAT_CPU_PROFILE=1 it instead profiles the CPU from then until the
// connections go (rate limits raised as in bench/signalling.sh) into
// <folder>/cpu.pprof, for a run of the generator with traffic.
func TestIdleMemoryProfile(t *testing.T) {
	dir := os.Getenv("LEPEERCHAT_IDLE_PROFILE")
	if dir == "" {
		t.Skip("set LEPEERCHAT_IDLE_PROFILE to a folder to run this diagnostic")
	}
	want := 10000
	if n, err := strconv.Atoi(os.Getenv("LEPEERCHAT_IDLE_CONNS")); err == nil {
		want = n
	}
	cpu := os.Getenv("LEPEERCHAT_CPU_PROFILE") == "1"
	if !cpu {
		// Every allocation recorded: per-connection objects are a few
		// hundred bytes, far below the default sampling interval.
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	ts := startServer(t, "", func(c *Config) {
		c.IdleAfter = 0 // the default of a real server, not the tests' millisecond
		c.MaxConnsPerIP = 1 << 20
		c.CreateRate, c.CreateBurst, c.MaxRooms = 1e6, 1e6, 1<<30
		c.WideCreateRate, c.WideCreateBurst = 1e6, 1e6
		if cpu {
			c.Rate, c.Burst = 1e6, 1e6
			c.PeerRate, c.PeerBurst = 1e6, 1e6
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: ts.srv}
	go hs.Serve(ln)
	defer hs.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := os.WriteFile(filepath.Join(dir, "url"), []byte("ws://"+ln.Addr().String()+"/ws"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func() int {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.sessions)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for open() < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d connections after 5 minutes", open())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if cpu {
		f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		for open() >= want {
			time.Sleep(100 * time.Millisecond)
		}
		pprof.StopCPUProfile()
		return
	}
	time.Sleep(5 * time.Second)
	runtime.GC()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	n := float64(open())
	per := func(a, b uint64) string { return fmt.Sprintf("%.0f", (float64(a)-float64(b))/n) }
	t.Logf("%d connections, %d goroutines", int(n), runtime.NumGoroutine())
	t.Logf("per connection: heap in use %s B (live objects %s B), stacks %s B, runtime total (Sys) %s B",
		per(after.HeapInuse, before.HeapInuse), per(after.HeapAlloc, before.HeapAlloc),
		per(after.StackInuse, before.StackInuse), per(after.Sys, before.Sys))
	f, err := os.Create(filepath.Join(dir, "heap.pprof"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}
