//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lepeerchat/turn/turntest"
)

// The network of TestRelayAcrossNATs, all inside namespaces the test makes:
//
//	homeA 10.99.1.2 ── natA 10.99.1.1 | 198.51.100.2 ─┐
//	                                                  ├─ br0 in pub: 198.51.100.1, the server
//	homeB 10.99.2.2 ── natB 10.99.2.1 | 198.51.100.3 ─┘
//
// 198.51.100.0/24 (a documentation range) stands for the Internet. Each NAT
// masquerades its home behind its outside address; its firewall forwards
// from the home only to the server's address (and replies), until opened.
const (
	labServerIP = "198.51.100.1"
	labWebPort  = "8080"
)

// TestRelayAcrossNATs runs the real binary in a "public" namespace and two
// pion peers in two homes, each behind its own NAT whose firewall lets only
// traffic to the server out. The peers must connect through the built-in
// relay, with chat and audio both ways; with the firewalls opened, the same
// pair must connect directly. It needs root (network namespaces, veth,
// nftables); without it the test skips, unless CI is set: then it fails.
//
// With LEPEERCHAT_BENCH_RELAY set to a size in MiB (1 means 64), it also
// measures a bulk data-channel transfer over both paths.
func TestRelayAcrossNATs(t *testing.T) {
	lab := newNATLab(t)
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
	srv := launchIn(t, lab.pub, nil, bin, "-http", "-listen", labServerIP+":"+labWebPort,
		"-data", filepath.Join(t.TempDir(), "data"), "-turn-listen", ":3478")
	srv.waitLog("the running message", startTimeout, func(l string) bool { return strings.Contains(l, "lepeerchat is running") })
	turnLine := srv.waitLog("the STUN/TURN server", startTimeout, func(l string) bool { return strings.Contains(l, "STUN/TURN server listening") })
	// Nothing said where the server's public address is: it is guessed
	// from the namespace's only interface.
	if ip := logAttr(turnLine, "relay-ip"); ip != labServerIP {
		t.Fatalf("relay address %q, want %s guessed from the interfaces (%s)", ip, labServerIP, turnLine)
	}
	wsURL := "ws://" + labServerIP + ":" + labWebPort + "/ws"

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
		if relayEnd.Address != labServerIP {
			t.Errorf("the relay end %s is not the server's address", relayEnd)
		}
		// The peers did try the direct paths: the firewalls stopped them.
		if n := lab.blocked(t); n == 0 {
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

	lab.openFirewalls(t)
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
		if !strings.HasPrefix(a.Remote.Address, "198.51.100.") || a.Remote.Address == labServerIP {
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

// natLab is the set of namespaces of one run.
type natLab struct {
	prefix                        string
	pub, natA, natB, homeA, homeB string
}

// newNATLab builds the network drawn above, with the NATs' firewalls
// closed. Every namespace (and with it every veth) is deleted when the
// test ends, whatever happens.
func newNATLab(t *testing.T) *natLab {
	t.Helper()
	cannot := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set, but "+format, args...)
		}
		t.Skipf(format, args...)
	}
	if os.Geteuid() != 0 {
		cannot("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		cannot("the ip command (Debian iproute2) is missing")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		// Debian's package; the machine's apt is reachable.
		t.Log("nft missing: installing Debian's nftables")
		if out, err := exec.Command("apt-get", "install", "-y", "nftables").CombinedOutput(); err != nil {
			t.Logf("apt-get install nftables: %v\n%s", err, out)
		}
		if _, err := exec.LookPath("nft"); err != nil {
			cannot("nftables is missing and could not be installed")
		}
	}
	sweepStaleLabs(t)

	suffix := make([]byte, 3)
	rand.Read(suffix)
	l := &natLab{prefix: fmt.Sprintf("lpc-%d-%s-", os.Getpid(), hex.EncodeToString(suffix))}
	l.pub, l.natA, l.natB, l.homeA, l.homeB = l.prefix+"pub", l.prefix+"natA", l.prefix+"natB", l.prefix+"homeA", l.prefix+"homeB"
	for i, ns := range []string{l.pub, l.natA, l.natB, l.homeA, l.homeB} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			if i == 0 {
				cannot("cannot make a network namespace: %v: %s", err, out)
			}
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		ipIn(t, ns, "link", "set", "lo", "up")
	}

	// The "Internet": a bridge in pub holding the server's address.
	ipIn(t, l.pub, "link", "add", "br0", "type", "bridge")
	ipIn(t, l.pub, "addr", "add", labServerIP+"/24", "dev", "br0")
	ipIn(t, l.pub, "link", "set", "br0", "up")
	for i, side := range []struct{ nat, home, wan, lan string }{
		{l.natA, l.homeA, "198.51.100.2", "10.99.1"},
		{l.natB, l.homeB, "198.51.100.3", "10.99.2"},
	} {
		port := fmt.Sprintf("p%d", i)
		// Each veth is made with its two ends already in their
		// namespaces: no interface ever appears in the test's own.
		ipIn(t, side.nat, "link", "add", "wan", "type", "veth", "peer", "name", port, "netns", l.pub)
		ipIn(t, l.pub, "link", "set", port, "master", "br0")
		ipIn(t, l.pub, "link", "set", port, "up")
		ipIn(t, side.nat, "addr", "add", side.wan+"/24", "dev", "wan")
		ipIn(t, side.nat, "link", "set", "wan", "up")
		ipIn(t, side.nat, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", side.home)
		ipIn(t, side.nat, "addr", "add", side.lan+".1/24", "dev", "lan")
		ipIn(t, side.nat, "link", "set", "lan", "up")
		ipIn(t, side.home, "addr", "add", side.lan+".2/24", "dev", "eth0")
		ipIn(t, side.home, "link", "set", "eth0", "up")
		ipIn(t, side.home, "route", "add", "default", "via", side.lan+".1")
		runIn(t, side.nat, "", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
		runIn(t, side.nat, fmt.Sprintf(`
table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
}
table inet filter {
	# Unsolicited traffic to the NAT itself is dropped before conntrack
	# keeps it: otherwise the first hole-punching packet from the other
	# home would take the mapping's tuple and make the NAT pick another
	# port for the reply (a symmetric NAT), as home routers do not.
	chain incoming {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state new drop
	}
	counter blocked {
	}
	chain forwarding {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan" oifname "wan" ip daddr %s accept
		iifname "lan" counter name "blocked" drop
	}
}
`, labServerIP), "nft", "-f", "-")
	}
	return l
}

// openFirewalls lets each home send anywhere.
func (l *natLab) openFirewalls(t *testing.T) {
	t.Helper()
	for _, nat := range []string{l.natA, l.natB} {
		runIn(t, nat, "", "nft", "insert", "rule", "inet", "filter", "forwarding", "iifname", "lan", "oifname", "wan", "accept")
	}
}

// blocked returns how many packets from the homes the NATs' firewalls
// dropped.
func (l *natLab) blocked(t *testing.T) int {
	t.Helper()
	total := 0
	for _, nat := range []string{l.natA, l.natB} {
		out, err := exec.Command("ip", "netns", "exec", nat, "nft", "list", "counter", "inet", "filter", "blocked").CombinedOutput()
		if err != nil {
			t.Fatalf("read the counter in %s: %v: %s", nat, err, out)
		}
		f := strings.Fields(string(out))
		for i := range f[:len(f)-1] {
			if f[i] == "packets" {
				n, err := strconv.Atoi(f[i+1])
				if err != nil {
					t.Fatalf("counter output %q", out)
				}
				total += n
			}
		}
	}
	return total
}

// pair runs peer A (who creates the room) in homeA and peer B in homeB and
// returns what each saw.
func (l *natLab) pair(t *testing.T, wsURL string, bulk int) (a, b *turntest.Result) {
	t.Helper()
	oa := turntest.Options{URL: wsURL, Name: "A", CreateRoom: "Across NATs", BulkBytes: bulk}
	pa := l.agent(t, l.homeA, oa)
	line := pa.waitLog("A's invitation", agentTimeout, func(s string) bool { return strings.HasPrefix(s, "AGENT-INVITE ") })
	f := strings.Fields(line)
	if len(f) != 3 {
		t.Fatalf("bad invitation line %q", line)
	}
	ob := turntest.Options{URL: wsURL, Name: "B", Room: f[1], Invite: f[2], BulkBytes: bulk}
	pb := l.agent(t, l.homeB, ob)
	return agentResult(t, pa, "A"), agentResult(t, pb, "B")
}

func (l *natLab) agent(t *testing.T, ns string, o turntest.Options) *proc {
	t.Helper()
	spec, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return launchIn(t, ns, []string{"LPC_NETNS_AGENT=" + string(spec)},
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
func launchIn(t *testing.T, ns string, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{t: t, log: newLineLog(), exited: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
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

func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

func runIn(t *testing.T, ns, stdin string, argv ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in %s: %s: %v: %s", ns, strings.Join(argv, " "), err, out)
	}
}

// sweepStaleLabs deletes the namespaces of earlier runs whose process is
// gone (killed before its cleanup ran).
func sweepStaleLabs(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "lpc-") {
			continue
		}
		parts := strings.SplitN(f[0], "-", 4)
		if len(parts) < 4 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its run is still going
		}
		if out, err := exec.Command("ip", "netns", "del", f[0]).CombinedOutput(); err != nil {
			t.Logf("delete stale namespace %s: %v: %s", f[0], err, out)
		}
	}
}
