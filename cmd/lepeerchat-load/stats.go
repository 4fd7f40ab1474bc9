package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// histogram is a log-linear latency histogram in nanoseconds: exact below
// 64 ns, then 64 sub-buckets per power of two (relative error < 1/128).
// It is safe for concurrent use: every bucket is an atomic counter.
type histogram struct {
	buckets [histBuckets]atomic.Uint64
	max     atomic.Int64
	n       atomic.Uint64
}

const (
	histSub     = 64
	histBuckets = histSub * 64
)

// bucketOf is the index of the bucket that holds v.
func bucketOf(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift is in [64, 128)
	i := histSub + shift*histSub + int(v>>uint(shift)) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketRange is the smallest value of bucket i and its width.
func bucketRange(i int) (low, width uint64) {
	if i < histSub {
		return uint64(i), 1
	}
	shift := uint((i - histSub) / histSub)
	m := uint64(histSub + (i-histSub)%histSub)
	return m << shift, 1 << shift
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.buckets[bucketOf(uint64(d))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// percentile is the value below which a fraction p (0..1) of the samples
// lie: the middle of the bucket holding the sample of rank ceil(p·n),
// never above the maximum seen.
func (h *histogram) percentile(p float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(float64(n)*p + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i := range h.buckets {
		cum += h.buckets[i].Load()
		if cum >= rank {
			low, w := bucketRange(i)
			v := time.Duration(low + w/2)
			if m := time.Duration(h.max.Load()); v > m {
				v = m
			}
			return v
		}
	}
	return time.Duration(h.max.Load())
}

// pacing: message i (from 0) of a stream at rate r per second is due at
// i/r after the start. dueBy is how many are due once elapsed has passed;
// dueAt is when message i is due.
func dueBy(elapsed time.Duration, rate float64) int64 {
	if elapsed < 0 || rate <= 0 {
		return 0
	}
	return int64(elapsed.Seconds()*rate) + 1
}

func dueAt(i int64, rate float64) time.Duration {
	return time.Duration(float64(i) / rate * float64(time.Second))
}

// putDigits writes v as exactly len(b) decimal digits, zero-padded.
func putDigits(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// parseDigits reads the decimal digits at the start of b.
func parseDigits(b []byte) (uint64, bool) {
	var v uint64
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + uint64(c-'0')
		n++
	}
	return v, n > 0
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clkTck is USER_HZ, 100 on every Linux architecture Go runs on.
const clkTck = 100

// procCPU is utime+stime of process pid, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

func parseStatCPU(b []byte) (time.Duration, error) {
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Then state is field 3; utime and stime are 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad stat line")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat line")
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime/stime")
	}
	return time.Duration(u+s) * time.Second / clkTck, nil
}

// procRSS is the resident set of process pid in bytes (VmRSS).
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("VmRSS:")) {
			fs := bytes.Fields(line[6:])
			if len(fs) >= 1 {
				kb, err := strconv.ParseInt(string(fs[0]), 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
