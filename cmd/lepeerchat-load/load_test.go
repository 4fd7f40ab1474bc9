package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketsCoverValues(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 123456, 1 << 30, 1<<40 + 12345} {
		i := bucketOf(v)
		low, w := bucketRange(i)
		if v < low || v >= low+w {
			t.Errorf("value %d in bucket %d = [%d, %d)", v, i, low, low+w)
		}
		if v >= 128 && float64(w)/float64(v) > 1.0/64 {
			t.Errorf("bucket of %d is %d wide: too coarse", v, w)
		}
	}
}

func TestPercentile(t *testing.T) {
	var h histogram
	if h.percentile(0.5) != 0 {
		t.Fatal("empty histogram should give 0")
	}
	// 1..10000 µs, shuffled.
	vals := make([]time.Duration, 10000)
	for i := range vals {
		vals[i] = time.Duration(i+1) * time.Microsecond
	}
	rand.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	for _, v := range vals {
		h.record(v)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.percentile(c.p)
		if d := float64(got-c.want) / float64(c.want); d > 0.01 || d < -0.01 {
			t.Errorf("p%v = %v, want %v ±1%%", c.p*100, got, c.want)
		}
	}
	if got := time.Duration(h.max.Load()); got != 10000*time.Microsecond {
		t.Errorf("max = %v", got)
	}
	// Never above the maximum: one sample.
	var one histogram
	one.record(777 * time.Microsecond)
	if got := one.percentile(0.99); got > 777*time.Microsecond || got < 770*time.Microsecond {
		t.Errorf("single sample p99 = %v", got)
	}
}

func TestPacing(t *testing.T) {
	const rate = 20000.0
	if dueBy(0, rate) != 1 {
		t.Errorf("the first message is due at once")
	}
	if dueBy(-time.Second, rate) != 0 || dueBy(time.Second, 0) != 0 {
		t.Errorf("nothing due before the start or at rate 0")
	}
	if got := dueBy(time.Second, rate); got != 20001 {
		t.Errorf("due after 1 s = %d, want 20001", got)
	}
	if got := dueAt(20000, rate); got != time.Second {
		t.Errorf("message 20000 due at %v", got)
	}
	// dueAt and dueBy agree: message i is due exactly when dueBy passes i.
	for _, i := range []int64{1, 7, 999, 123457} {
		at := dueAt(i, rate)
		if dueBy(at, rate) < i+1 || dueBy(at-time.Microsecond, rate) > i {
			t.Errorf("message %d: dueAt %v, dueBy there %d", i, at, dueBy(at, rate))
		}
	}
}

func TestFrames(t *testing.T) {
	for _, target := range []string{"lepeerchat", "peerjs"} {
		for _, c := range []struct {
			kind  frameKind
			size  int
			acked bool
		}{{kindCandidate, 400, false}, {kindCandidate, 400, true}, {kindCandidate, 300, false}, {kindOffer, 4096, false}, {kindOffer, 4096, true}} {
			f := buildFrame(target, c.kind, "s8ef1fcVZdJqhOoXKIo_hA", c.size, c.acked)
			if len(f.b) != c.size {
				t.Errorf("%s %d: %d bytes", target, c.kind, len(f.b))
			}
			if quiet := bytes.Contains(f.b, []byte(`"quiet":true`)); quiet != (target == "lepeerchat" && !c.acked) {
				t.Errorf("%s %d acked=%v: quiet %v in %s", target, c.kind, c.acked, quiet, f.b)
			}
			putDigits(f.b[f.tsOff:f.tsOff+tsDigits], 1234567890123)
			if !json.Valid(f.b) {
				t.Errorf("%s %d: invalid JSON %s", target, c.kind, f.b)
			}
			if ts, ok := findTS(f.b); !ok || ts != 1234567890123 {
				t.Errorf("%s: timestamp %d, %v", target, ts, ok)
			}
		}
	}
}

func TestParseStat(t *testing.T) {
	line := []byte("1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 8 0 100 0 0\n")
	got, err := parseStatCPU(line)
	if err != nil || got != 4*time.Second {
		t.Errorf("got %v, %v; want 4s", got, err)
	}
}

func TestCheckLoopback(t *testing.T) {
	for u, ok := range map[string]bool{
		"ws://127.0.0.1:8080/ws": true, "ws://[::1]:9000/peerjs": true, "ws://localhost:1/": true,
		"ws://10.0.0.1/ws": false, "wss://127.0.0.1/ws": false, "ws://example.org/ws": false,
	} {
		if err := checkLoopback(u); (err == nil) != ok {
			t.Errorf("%s: %v", u, err)
		}
	}
}
