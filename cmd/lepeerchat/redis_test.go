//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"lepeerchat/store/redisstore/redistest"
)

// TestTwoProcessesShareRedis runs the binary twice with -redis: a room made
// on one is joined on the other, presence and signalling cross between
// them, and a member of a killed process rejoins on the survivor.
func TestTwoProcessesShareRedis(t *testing.T) {
	t.Parallel()
	redis := redistest.Start(t, false)
	p1 := start(t, t.TempDir(), nil, "-http", "-redis", redis.URL(), "-node", "one")
	p2 := start(t, t.TempDir(), []string{"LEPEERCHAT_REDIS=" + redis.URL(), "LEPEERCHAT_NODE=two"}, "-http")
	for _, p := range []*proc{p1, p2} {
		if _, err := os.Stat(filepath.Join(p.dataDir, "rooms.db")); err == nil {
			t.Errorf("a node with -redis created rooms.db in its data folder")
		}
	}

	ann := p1.dial()
	owner := ann.createRoom("Two processes", "Ann")
	token := ann.mustCall("invite", nil, "invite").obj("invite").str("token")
	bob := p2.dial()
	guest := bob.mustCall("join", map[string]any{"room": owner.room, "invite": token, "name": "Bob"}, "joined")
	guestID := guest.obj("self").str("id")
	if ev := ann.event("member.joined"); ev.obj("member").str("id") != guestID {
		t.Fatalf("member.joined on the other process = %v", ev)
	}
	ann.mustCall("signal", map[string]any{"to": guestID, "data": map[string]any{"sdp": "x"}}, "ok")
	if ev := bob.event("signal"); ev.str("from") != owner.id {
		t.Fatalf("signal across processes = %v", ev)
	}

	p1.signal(syscall.SIGKILL)
	p1.wait(exitTimeout)
	ann2 := p2.dial()
	r := ann2.mustCall("rejoin", owner.creds(), "joined")
	if r.obj("room").str("owner") != owner.id {
		t.Fatalf("rejoin on the survivor = %v", r)
	}
	ann2.mustCall("signal", map[string]any{"to": guestID, "data": map[string]any{}}, "ok")
	bob.event("signal")
}

// TestRedisNeedsANodeName checks that -redis refuses the default node name,
// which every node would otherwise share.
func TestRedisNeedsANodeName(t *testing.T) {
	t.Parallel()
	redis := redistest.Start(t, false)
	p := launch(t, nil, "-listen", "127.0.0.1:0", "-data", t.TempDir(), "-http", "-redis", redis.URL())
	if code := p.wait(exitTimeout); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if out := p.log.String(); !strings.Contains(out, "-node") {
		t.Errorf("output does not mention -node:\n%s", out)
	}
}

// TestRedisDownAtStart checks that a node whose Redis does not answer
// gives up with a clear error.
func TestRedisDownAtStart(t *testing.T) {
	t.Parallel()
	redis := redistest.Start(t, false)
	redis.Kill()
	p := launch(t, nil, "-listen", "127.0.0.1:0", "-data", t.TempDir(), "-http", "-redis", redis.URL(), "-node", "n")
	if code := p.wait(exitTimeout); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if out := p.log.String(); !strings.Contains(out, "redis") || !strings.Contains(out, "unavailable") {
		t.Errorf("output does not say redis is unavailable:\n%s", out)
	}
}
