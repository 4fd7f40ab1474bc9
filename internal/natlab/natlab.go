// Package natlab builds, for tests, a small network of Linux network
// namespaces in which a server sits on a stand-in for the Internet and two
// homes reach it through NATs with strict firewalls:
//
//	HomeA 10.99.1.2 ── NATA 10.99.1.1 | 198.51.100.2 ─┐
//	                                                  ├─ br0 in Pub: 198.51.100.1, the server
//	HomeB 10.99.2.2 ── NATB 10.99.2.1 | 198.51.100.3 ─┘
//
// 198.51.100.0/24 (a documentation range) stands for the Internet. Each NAT
// masquerades its home behind its outside address; its firewall forwards
// from the home only to the server's address (and the replies), until
// [Lab.OpenFirewalls]. Programs run in a namespace with [Lab.Command].
//
// Building a lab needs root, ip (iproute2) and nft (nftables, installed
// with apt-get when missing). Without them [New] skips the test, unless the
// CI environment variable is set: then it fails it.
package natlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Addresses of the lab.
const (
	ServerIP = "198.51.100.1" // the server, in Pub
	NATAIP   = "198.51.100.2" // home A's public address (its NAT's outside)
	NATBIP   = "198.51.100.3" // home B's public address
)

// Lab is the set of namespaces of one test, by name.
type Lab struct {
	Pub, NATA, NATB, HomeA, HomeB string
}

// New builds the network drawn in the package comment, with the NATs'
// firewalls closed. Every namespace (and with it every veth) is deleted
// when the test ends, whatever happens; processes started in them must end
// before (start them after New, so that their cleanup runs first).
func New(t testing.TB) *Lab {
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
	sweepStale(t)

	suffix := make([]byte, 3)
	rand.Read(suffix)
	prefix := fmt.Sprintf("lpc-%d-%s-", os.Getpid(), hex.EncodeToString(suffix))
	l := &Lab{Pub: prefix + "pub", NATA: prefix + "natA", NATB: prefix + "natB", HomeA: prefix + "homeA", HomeB: prefix + "homeB"}
	for i, ns := range []string{l.Pub, l.NATA, l.NATB, l.HomeA, l.HomeB} {
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

	// The "Internet": a bridge in Pub holding the server's address.
	ipIn(t, l.Pub, "link", "add", "br0", "type", "bridge")
	ipIn(t, l.Pub, "addr", "add", ServerIP+"/24", "dev", "br0")
	ipIn(t, l.Pub, "link", "set", "br0", "up")
	for i, side := range []struct{ nat, home, wan, lan string }{
		{l.NATA, l.HomeA, NATAIP, "10.99.1"},
		{l.NATB, l.HomeB, NATBIP, "10.99.2"},
	} {
		port := fmt.Sprintf("p%d", i)
		// Each veth is made with its two ends already in their
		// namespaces: no interface ever appears in the test's own.
		ipIn(t, side.nat, "link", "add", "wan", "type", "veth", "peer", "name", port, "netns", l.Pub)
		ipIn(t, l.Pub, "link", "set", port, "master", "br0")
		ipIn(t, l.Pub, "link", "set", port, "up")
		ipIn(t, side.nat, "addr", "add", side.wan+"/24", "dev", "wan")
		ipIn(t, side.nat, "link", "set", "wan", "up")
		ipIn(t, side.nat, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", side.home)
		ipIn(t, side.nat, "addr", "add", side.lan+".1/24", "dev", "lan")
		ipIn(t, side.nat, "link", "set", "lan", "up")
		ipIn(t, side.home, "addr", "add", side.lan+".2/24", "dev", "eth0")
		ipIn(t, side.home, "link", "set", "eth0", "up")
		ipIn(t, side.home, "route", "add", "default", "via", side.lan+".1")
		l.run(t, side.nat, "", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
		l.run(t, side.nat, fmt.Sprintf(`
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
`, ServerIP), "nft", "-f", "-")
	}
	return l
}

// Command returns a command that runs argv inside namespace ns (through
// ip netns exec, which replaces itself with argv: the command's process is
// argv's). Extra files, standard streams and the environment pass through.
func (l *Lab) Command(ns string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// OpenFirewalls lets each home send anywhere.
func (l *Lab) OpenFirewalls(t testing.TB) {
	t.Helper()
	for _, nat := range []string{l.NATA, l.NATB} {
		l.run(t, nat, "", "nft", "insert", "rule", "inet", "filter", "forwarding", "iifname", "lan", "oifname", "wan", "accept")
	}
}

// Blocked returns how many packets from the homes the NATs' firewalls
// have dropped.
func (l *Lab) Blocked(t testing.TB) int {
	t.Helper()
	total := 0
	for _, nat := range []string{l.NATA, l.NATB} {
		out, err := l.Command(nat, "nft", "list", "counter", "inet", "filter", "blocked").CombinedOutput()
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

func (l *Lab) run(t testing.TB, ns, stdin string, argv ...string) {
	t.Helper()
	cmd := l.Command(ns, argv...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in %s: %s: %v: %s", ns, strings.Join(argv, " "), err, out)
	}
}

func ipIn(t testing.TB, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

// sweepStale deletes the namespaces of earlier runs whose process is gone
// (killed before its cleanup ran).
func sweepStale(t testing.TB) {
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
