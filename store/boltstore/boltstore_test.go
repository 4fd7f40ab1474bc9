package boltstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"lepeerchat/room"
	"lepeerchat/store"
	"lepeerchat/store/storetest"
)

// openTemp opens a new store in a file of dir.
func openTemp(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(filepath.Join(dir, "rooms.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, t.TempDir()) })
}

func TestPersistence(t *testing.T) {
	storetest.RunPersistent(t, func(t *testing.T, dir string) store.Store { return openTemp(t, dir) })
}

func TestOpenRefusesAFileThatIsNotBolt(t *testing.T) {
	for name, content := range map[string][]byte{
		"text":    []byte("this is not a database\n"),
		"zeroes":  make([]byte, 16<<10),
		"garbage": []byte(strings.Repeat("lepeerchat\xff\x00", 2000)),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rooms.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open of a file that is not a bbolt database succeeded")
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("error %v does not wrap ErrUnavailable", err)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "not a bbolt database") {
				t.Errorf("error %q does not name the file and the problem", msg)
			}
		})
	}
}

func TestOpenRefusesAnUndecodableRoom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rooms.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	writeRaw(t, path, "rooms", "r1", []byte("{not json"))
	s, err = Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a file holding an undecodable room succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), `"r1"`) {
		t.Errorf("error %v does not wrap ErrUnavailable or name the room", err)
	}
}

func TestOpenRefusesAnotherFormatVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rooms.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	writeRaw(t, path, "meta", "format", []byte("99"))
	s, err = Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a file of format version 99 succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "version") {
		t.Errorf("error %v does not wrap ErrUnavailable or mention the version", err)
	}
}

// writeRaw puts key=value in bucket of the bbolt file at path, bypassing
// the Store.
func writeRaw(t *testing.T, path, bucket, key string, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).Put([]byte(key), value)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenTwiceFailsInsteadOfWaiting(t *testing.T) {
	dir := t.TempDir()
	s := openTemp(t, dir)
	defer s.Close()
	const timeout = 100 * time.Millisecond
	start := time.Now()
	s2, err := open(filepath.Join(dir, "rooms.db"), timeout)
	if err == nil {
		s2.Close()
		t.Fatal("a second Open of a file in use succeeded")
	}
	if elapsed := time.Since(start); elapsed > timeout+2*time.Second {
		t.Errorf("second Open took %v, want about %v", elapsed, timeout)
	}
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "locked") {
		t.Errorf("error %v does not wrap ErrUnavailable or say the file is locked", err)
	}
	// The first store is unharmed.
	if _, err := s.Update(t.Context(), "r1", func(*room.Room) (*room.Room, error) { return storetest.SampleRoom("r1"), nil }); err != nil {
		t.Fatalf("Update of the first store: %v", err)
	}
}

func TestOpenInMissingDirectoryFails(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir", "rooms.db"))
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open in a missing directory: error %v, want ErrUnavailable and ErrNotExist", err)
	}
}

func TestAfterClose(t *testing.T) {
	s := openTemp(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	_, err := s.Get(t.Context(), "r1")
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Get after Close: %v, want ErrUnavailable saying closed", err)
	}
}

func TestCloseWaitsForAnUpdateInProgress(t *testing.T) {
	dir := t.TempDir()
	s := openTemp(t, dir)
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := s.Update(t.Context(), "r1", func(*room.Room) (*room.Room, error) {
			close(entered)
			<-release
			return storetest.SampleRoom("r1"), nil
		})
		done <- err
	}()
	<-entered
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v during an Update", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Update interrupted by Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = openTemp(t, dir)
	defer s.Close()
	if _, err := s.Get(t.Context(), "r1"); err != nil {
		t.Fatalf("room written by the Update that Close waited for: %v", err)
	}
}

func TestReadsDoNotWaitForASlowUpdate(t *testing.T) {
	s := openTemp(t, t.TempDir())
	defer s.Close()
	ctx := t.Context()
	for _, id := range []string{"r1", "r2"} {
		if _, err := s.Update(ctx, id, func(*room.Room) (*room.Room, error) { return storetest.SampleRoom(id), nil }); err != nil {
			t.Fatal(err)
		}
	}
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := s.Update(ctx, "r1", func(r *room.Room) (*room.Room, error) {
			close(entered)
			<-release
			r.Name = "renamed"
			return r, nil
		})
		done <- err
	}()
	<-entered
	if r, err := s.Get(ctx, "r1"); err != nil || r.Name != storetest.SampleRoom("r1").Name {
		t.Errorf("Get of the room being updated = %v, %v; want its state before the Update", r, err)
	}
	if _, err := s.Get(ctx, "r2"); err != nil {
		t.Errorf("Get of another room: %v", err)
	}
	if ids, err := s.IDs(ctx); err != nil || len(ids) != 2 {
		t.Errorf("IDs = %q, %v", ids, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(ctx, "r1"); err != nil || r.Name != "renamed" {
		t.Errorf("Get after the Update = %v, %v; want the new name", r, err)
	}
}

func TestUpdateGivesUpWhenItsContextEndsWhileWaiting(t *testing.T) {
	s := openTemp(t, t.TempDir())
	defer s.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	go s.Update(t.Context(), "slow", func(*room.Room) (*room.Room, error) {
		close(entered)
		<-release
		return nil, nil
	})
	<-entered
	defer close(release)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Update(ctx, "r1", func(*room.Room) (*room.Room, error) {
		t.Error("fn called after the context ended")
		return nil, nil
	})
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Update waiting past its deadline: error %v, want the deadline", err)
	}
}

func TestUpdateRefusesAnEmptyID(t *testing.T) {
	s := openTemp(t, t.TempDir())
	defer s.Close()
	_, err := s.Update(t.Context(), "", func(*room.Room) (*room.Room, error) {
		t.Error("fn called for an empty id")
		return &room.Room{}, nil
	})
	if err == nil {
		t.Fatal("Update with an empty id succeeded")
	}
}

// crashEnv names the file in which the child of TestKill9KeepsAnAcknowledgedUpdate
// makes its update.
const crashEnv = "BOLTSTORE_CRASH_CHILD_DB"

// TestKill9KeepsAnAcknowledgedUpdate runs this test binary again as a child
// that updates a room, says so, and waits to be killed with SIGKILL; the
// update must be in the file afterwards.
func TestKill9KeepsAnAcknowledgedUpdate(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "rooms.db")
	s := openTemp(t, dir)
	if _, err := s.Update(t.Context(), "r1", func(*room.Room) (*room.Room, error) { return storetest.SampleRoom("r1"), nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9KeepsAnAcknowledgedUpdate$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	said := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "done") || strings.HasPrefix(line, "error") {
				said <- line
				return
			}
		}
		said <- "child exited without saying done"
	}()
	select {
	case line := <-said:
		if line != "done" {
			t.Fatalf("child: %s", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("child did not finish its update within 20 s")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
		t.Fatal(err)
	}
	cmd.Wait()

	s = openTemp(t, dir)
	defer s.Close()
	got, err := s.Get(t.Context(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if id := fmt.Sprintf("m-child%d", i); got.Members[id] == nil {
			t.Errorf("member %s added by the killed child is missing", id)
		}
	}
	if _, err := s.Get(t.Context(), "child-room"); err != nil {
		t.Errorf("room created by the killed child: %v", err)
	}
}

// crashChild makes updates in the file at path, prints "done" and waits to
// be killed.
func crashChild(path string) {
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	s, err := Open(path)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	for i := range 5 {
		_, err := s.Update(ctx, "r1", func(r *room.Room) (*room.Room, error) {
			id := fmt.Sprintf("m-child%d", i)
			r.Members[id] = &room.Member{ID: id, Name: id}
			return r, nil
		})
		if err != nil {
			fail(err)
		}
	}
	if _, err := s.Update(ctx, "child-room", func(*room.Room) (*room.Room, error) { return storetest.SampleRoom("child-room"), nil }); err != nil {
		fail(err)
	}
	fmt.Println("done")
	select {}
}

func BenchmarkUpdate(b *testing.B) {
	s := openTemp(b, b.TempDir())
	defer s.Close()
	ctx := b.Context()
	if _, err := s.Update(ctx, "r1", func(*room.Room) (*room.Room, error) { return storetest.SampleRoom("r1"), nil }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, err := s.Update(ctx, "r1", func(r *room.Room) (*room.Room, error) {
			r.Conns["node/1"] = fmt.Sprint("m-", i%3)
			return r, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s := openTemp(b, b.TempDir())
	defer s.Close()
	ctx := b.Context()
	if _, err := s.Update(ctx, "r1", func(*room.Room) (*room.Room, error) { return storetest.SampleRoom("r1"), nil }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, "r1"); err != nil {
			b.Fatal(err)
		}
	}
}
