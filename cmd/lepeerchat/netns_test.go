//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lepeerchat/internal/natlab"
	"lepeerchat/turn/turntest"
)

// labWebPort is the server's web port in the lab (natlab.ServerIP).
const labWebPort = "8080"

// TestRelayAcrossNATs runs the real binary in the "public" namespace of a
// natlab.Lab (its package comment draws the network) and two pion peers in
// its two homes, each behind its own NAT whose firewall lets only traffic
// to the server out. The peers must connect through the built-in
// relay, with chat and audio both ways; with the firewalls opened, the same
// pair must connect directly. It needs root (network namespaces, veth,
// nftables); without it the test skips, unless CI is set: then it fails.
//
// With LEPEERCHAT_BENCH_RELAY set to a size in MiB (1 means 64), it also
// measures a bulk data-channel transfer over both paths.
func TestRelayAcrossNATs(t *testing.T) {
	lab := &natLab{natlab.New(t)}
	bulk := 1 << 20
	if v := os.Getenv("LEPEERCHAT_BENCH_RELAY"); v != "" {
		mb, err := strconv.Atoi(v)
		if err != nil || mb < 1 {
			t.Fatalf("LEPEERCHAT_BENCH_RELAY=%q: want a size in MiB", v)
		}
		if mb == 1 {
			mb = 64
		}
		bulk = mb << 20
	}

	bin := binary(t)
	srv := launchIn(t, lab.Lab, lab.Pub, nil, bin, "-http", "-listen", natlab.ServerIP+":"+labWebPort,
		"-data", filepath.Join(t.TempDir(), "data"), "-turn-listen", ":3478")
	srv.waitLog("the running message", startTimeout, func(l string) bool { return strings.Contains(l, "lepeerchat is running") })
	turnLine := srv.waitLog("the STUN/TURN server", startTimeout, func(l string) bool { return strings.Contains(l, "STUN/TURN server listening") })
	// Nothing said where the server's public address is: it is guessed
	// from the namespace's only interface.
	if ip := logAttr(turnLine, "relay-ip"); ip != natlab.ServerIP {
		t.Fatalf("relay address %q, want %s guessed from the interfaces (%s)", ip, natlab.ServerIP, turnLine)
	}
	wsURL := "ws://" + natlab.ServerIP + ":" + labWebPort + "/ws"

	t.Run("firewalled", func(t *testing.T) {
		cpu := processCPU(t, srv)
		a, b := lab.pair(t, wsURL, bulk)
		cpu = processCPU(t, srv) - cpu
		for name, r := range map[string]*turntest.Result{"A": a, "B": b} {
			if !r.Relayed() {
				t.Errorf("%s connected without the relay: %s ⇄ %s", name, r.Local, r.Remote)
			}
			checkTalked(t, name, r)
		}
		relayEnd := a.Local
		if relayEnd.Type != "relay" {
			relayEnd = a.Remote
		}
		if relayEnd.Address != natlab.ServerIP {
			t.Errorf("the relay end %s is not the server's address", relayEnd)
		}
		// The peers did try the direct paths: the firewalls stopped them.
		if n := lab.Blocked(t); n == 0 {
			t.Error("the firewalls dropped nothing: the direct paths were never tried")
		} else {
			t.Logf("the firewalls dropped %d packets of direct attempts", n)
		}
		t.Logf("relayed: A %s ⇄ %s, connected in %v; bulk %d MiB at %.1f MB/s; server CPU %v for the whole call",
			a.Local, a.Remote, a.Connected.Round(time.Millisecond), a.BulkBytes>>20, a.BulkMBps(), cpu)
	})
	if t.Failed() {
		return
	}

	lab.OpenFirewalls(t)
	t.Run("open", func(t *testing.T) {
		cpu := processCPU(t, srv)
		a, b := lab.pair(t, wsURL, bulk)
		cpu = processCPU(t, srv) - cpu
		for name, r := range map[string]*turntest.Result{"A": a, "B": b} {
			if r.Relayed() {
				t.Errorf("%s went through the relay although a direct path exists: %s ⇄ %s", name, r.Local, r.Remote)
			}
			checkTalked(t, name, r)
		}
		if !strings.HasPrefix(a.Remote.Address, "198.51.100.") || a.Remote.Address == natlab.ServerIP {
			t.Errorf("A's remote end %s is not B's NAT", a.Remote)
		}
		t.Logf("direct: A %s ⇄ %s, connected in %v; bulk %d MiB at %.1f MB/s; server CPU %v for the whole call",
			a.Local, a.Remote, a.Connected.Round(time.Millisecond), a.BulkBytes>>20, a.BulkMBps(), cpu)
	})
}

// processCPU returns the CPU time (user and system) p has used so far.
func processCPU(t *testing.T, p *proc) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the server's CPU time: %v", err)
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.Atoi(f[11])
	stime, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		t.Fatalf("parse %s", b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func checkTalked(t *testing.T, name string, r *turntest.Result) {
	t.Helper()
	if !strings.HasPrefix(r.Chat, "hello from ") {
		t.Errorf("%s got chat %q", name, r.Chat)
	}
	if r.AudioPackets < 25 {
		t.Errorf("%s received %d audio packets, want 25", name, r.AudioPackets)
	}
}

// TestNetnsAgent is one peer of TestRelayAcrossNATs, run by it in a home
// namespace (the test binary re-executed there). It reads its options from
// LPC_NETNS_AGENT and prints AGENT-INVITE and AGENT-RESULT lines.
func TestNetnsAgent(t *testing.T) {
	spec := os.Getenv("LPC_NETNS_AGENT")
	if spec == "" {
		t.Skip("runs only as a peer inside a namespace made by TestRelayAcrossNATs")
	}
	var o turntest.Options
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		t.Fatalf("LPC_NETNS_AGENT: %v", err)
	}
	o.OnInvite = func(room, invite string) { fmt.Printf("AGENT-INVITE %s %s\n", room, invite) }
	o.Logf = func(format string, args ...any) { fmt.Printf("agent: "+format+"\n", args...) }
	ctx, cancel := context.WithTimeout(context.Background(), agentTimeout)
	defer cancel()
	res, err := turntest.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("AGENT-RESULT %s\n", b)
}

const agentTimeout = 60 * time.Second

// natLab is the lab of TestRelayAcrossNATs, with its pion peers.
type natLab struct{ *natlab.Lab }

// pair runs peer A (who creates the room) in homeA and peer B in homeB and
// returns what each saw.
func (l *natLab) pair(t *testing.T, wsURL string, bulk int) (a, b *turntest.Result) {
	t.Helper()
	oa := turntest.Options{URL: wsURL, Name: "A", CreateRoom: "Across NATs", BulkBytes: bulk}
	pa := l.agent(t, l.HomeA, oa)
	line := pa.waitLog("A's invitation", agentTimeout, func(s string) bool { return strings.HasPrefix(s, "AGENT-INVITE ") })
	f := strings.Fields(line)
	if len(f) != 3 {
		t.Fatalf("bad invitation line %q", line)
	}
	ob := turntest.Options{URL: wsURL, Name: "B", Room: f[1], Invite: f[2], BulkBytes: bulk}
	pb := l.agent(t, l.HomeB, ob)
	return agentResult(t, pa, "A"), agentResult(t, pb, "B")
}

func (l *natLab) agent(t *testing.T, ns string, o turntest.Options) *proc {
	t.Helper()
	spec, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return launchIn(t, l.Lab, ns, []string{"LPC_NETNS_AGENT=" + string(spec)},
		os.Args[0], "-test.run=^TestNetnsAgent$", "-test.count=1", "-test.v")
}

func agentResult(t *testing.T, p *proc, name string) *turntest.Result {
	t.Helper()
	line := p.waitLog(name+"'s result", agentTimeout, func(s string) bool { return strings.HasPrefix(s, "AGENT-RESULT ") })
	var r turntest.Result
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "AGENT-RESULT ")), &r); err != nil {
		t.Fatalf("%s's result %q: %v", name, line, err)
	}
	if code := p.wait(exitTimeout); code != 0 {
		t.Errorf("agent %s exited with %d:\n%s", name, code, p.log.String())
	}
	return &r
}

// launchIn starts argv inside namespace ns, like launch: output collected,
// killed when the test ends.
func launchIn(t *testing.T, lab *natlab.Lab, ns string, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{t: t, log: newLineLog(), exited: make(chan struct{})}
	p.cmd = lab.Command(ns, argv...)
	p.cmd.Env = append(childEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v in %s: %v", argv, ns, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			// ip netns exec replaced itself with argv: this is its pid.
			p.cmd.Process.Kill()
			<-p.exited
		}
		if strings.Contains(p.log.String(), "DATA RACE") {
			t.Errorf("the race detector reported a race in %s", filepath.Base(argv[0]))
		}
		if t.Failed() {
			t.Logf("output of %s in %s:\n%s", filepath.Base(argv[0]), ns, p.log.String())
		}
	})
	return p
}
