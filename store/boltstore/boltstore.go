// Package boltstore is the default Store of a single server node: every room
// is kept in memory and written through to a bbolt file, so that reads cost
// a copy and a restart, an upgrade or a crash loses nothing that Update
// acknowledged.
//
// The file holds three buckets: "rooms", mapping each room id to the JSON
// encoding of its room.Room; "revoked", mapping each revoked member id to
// the end of its revocation (Unix nanoseconds, decimal); and "meta", holding
// the format version of the file. The whole file is loaded at Open, which
// drops the revocations that have ended; after that the file is only
// written, never read.
package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"lepeerchat/room"
	"lepeerchat/store"
)

// LockTimeout is how long Open waits for the lock on the file before it
// concludes that another process is using it.
const LockTimeout = 2 * time.Second

// formatVersion is the version of the layout and encoding of the file. Open
// refuses a file of another version rather than misread it.
const formatVersion = 1

var (
	roomsBucket   = []byte("rooms")
	revokedBucket = []byte("revoked")
	metaBucket    = []byte("meta")
	formatKey     = []byte("format")
)

// errClosed is the cause of every failure of a Store used after Close.
var errClosed = errors.New("store is closed")

// Store is a store.Store kept in memory and persisted to a bbolt file. It is
// safe for concurrent use.
//
// Updates are serialised by one writer slot, which is what bbolt does with
// write transactions anyway. Reads never wait for a write: the map of rooms
// is locked only to look up or swap a pointer, and a stored *room.Room is
// never changed in place, only replaced.
type Store struct {
	path string
	db   *bolt.DB

	// writer holds one token while an Update or Close is in progress. It is
	// a channel rather than a mutex so that a waiting Update can give up
	// when its context ends.
	writer chan struct{}

	mu    sync.RWMutex // guards rooms, revoked and closed
	rooms map[string]*room.Room
	// revoked maps each revoked member to the end of its revocation.
	revoked map[string]time.Time
	closed  bool
}

var _ store.Store = (*Store)(nil)

// Open opens the bbolt file at path, creating it if absent, and loads every
// room it holds. The directory must exist. It fails, rather than waits, when
// another process holds the file for longer than LockTimeout, and fails on a
// file that is not a bbolt file or holds a room it cannot decode. Every
// failure wraps store.ErrUnavailable.
func Open(path string) (*Store, error) {
	return open(path, LockTimeout)
}

func open(path string, lockTimeout time.Duration) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, unavailable(fmt.Sprintf("open %s: file is locked, probably by another running server (waited %v)", path, lockTimeout), err)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, unavailable(fmt.Sprintf("open %s: not a bbolt database, or corrupt", path), err)
	case err != nil:
		return nil, unavailable("open "+path, err)
	}
	s := &Store{path: path, db: db, writer: make(chan struct{}, 1)}
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// load prepares the buckets of a new file, checks the format version of an
// existing one, and reads every room into memory.
func (s *Store) load() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(roomsBucket); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(revokedBucket); err != nil {
			return err
		}
		v := meta.Get(formatKey)
		if v == nil {
			return meta.Put(formatKey, []byte(strconv.Itoa(formatVersion)))
		}
		if string(v) != strconv.Itoa(formatVersion) {
			return fmt.Errorf("file has format version %q, this server reads version %d", v, formatVersion)
		}
		return nil
	})
	if err != nil {
		return unavailable("open "+s.path, err)
	}
	rooms := make(map[string]*room.Room)
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(roomsBucket).ForEach(func(k, v []byte) error {
			r, err := decode(v)
			if err != nil {
				return fmt.Errorf("room %q: %w", k, err)
			}
			if r.ID != string(k) {
				return fmt.Errorf("room %q: stored under another id, %q", r.ID, k)
			}
			rooms[r.ID] = r
			return nil
		})
	})
	if err != nil {
		return unavailable("load "+s.path, err)
	}
	revoked, err := s.loadRevoked(time.Now())
	if err != nil {
		return unavailable("load revocations from "+s.path, err)
	}
	s.rooms, s.revoked = rooms, revoked
	return nil
}

// loadRevoked reads the revocations still running at now, and deletes the
// others from the file.
func (s *Store) loadRevoked(now time.Time) (map[string]time.Time, error) {
	revoked := make(map[string]time.Time)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(revokedBucket)
		var ended [][]byte
		err := b.ForEach(func(k, v []byte) error {
			ns, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return fmt.Errorf("revocation of %q: %w", k, err)
			}
			if until := time.Unix(0, ns); until.After(now) {
				revoked[string(k)] = until
			} else {
				ended = append(ended, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range ended {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return revoked, err
}

// Get returns a copy of the room, or store.ErrNotFound. It never waits for
// an Update in progress.
func (s *Store) Get(_ context.Context, id string) (*room.Room, error) {
	s.mu.RLock()
	r, closed := s.rooms[id], s.closed
	s.mu.RUnlock()
	if closed {
		return nil, unavailable(fmt.Sprintf("get room %q", id), errClosed)
	}
	if r == nil {
		return nil, store.ErrNotFound
	}
	return r.Clone(), nil
}

// IDs returns the ids of every room, sorted.
func (s *Store) IDs(context.Context) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, unavailable("list rooms", errClosed)
	}
	return slices.Sorted(maps.Keys(s.rooms)), nil
}

// Update applies fn to a copy of the room, or to nil when the room does not
// exist, and stores what fn returns: the file is written and synced to disk
// before the change becomes visible to Get and before Update returns, so
// that an acknowledged change survives a crash. When fn returns nil the room
// is deleted; when fn fails, its error is returned as is and nothing is
// written. fn is called exactly once, unless ctx ends before Update's turn
// comes, in which case it is not called at all. A result whose ID is not id
// is refused.
func (s *Store) Update(ctx context.Context, id string, fn store.UpdateFunc) (*room.Room, error) {
	if id == "" {
		return nil, errors.New("boltstore: update: empty room id")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("boltstore: update room %q: %w", id, err)
	}
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("boltstore: update room %q: %w", id, ctx.Err())
	}
	defer func() { <-s.writer }()

	// Holding the writer slot, only this goroutine changes s.rooms.
	s.mu.RLock()
	cur, closed := s.rooms[id], s.closed
	s.mu.RUnlock()
	if closed {
		return nil, unavailable(fmt.Sprintf("update room %q", id), errClosed)
	}

	next, err := fn(cur.Clone())
	if err != nil {
		return nil, err
	}

	if next == nil {
		if cur == nil {
			return nil, nil
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(roomsBucket).Delete([]byte(id))
		})
		if err != nil {
			return nil, unavailable(fmt.Sprintf("delete room %q", id), err)
		}
		s.mu.Lock()
		delete(s.rooms, id)
		s.mu.Unlock()
		return nil, nil
	}

	if next.ID != id {
		return nil, fmt.Errorf("boltstore: update room %q: the new state has id %q", id, next.ID)
	}
	data, err := json.Marshal(next)
	if err != nil {
		return nil, fmt.Errorf("boltstore: encode room %q: %w", id, err)
	}
	// Keep in memory exactly what a restart would load, and a copy that
	// the caller, who keeps next, cannot reach.
	stored, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("boltstore: encode room %q: %w", id, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(roomsBucket).Put([]byte(id), data)
	})
	if err != nil {
		return nil, unavailable(fmt.Sprintf("write room %q", id), err)
	}
	s.mu.Lock()
	s.rooms[id] = stored
	s.mu.Unlock()
	return next, nil
}

// Revoke records that memberID is revoked until until, on disk before it
// returns, unless it already is until later. It also deletes the
// revocations that have ended.
func (s *Store) Revoke(ctx context.Context, memberID string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: revoke member %q: %w", memberID, err)
	}
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("boltstore: revoke member %q: %w", memberID, ctx.Err())
	}
	defer func() { <-s.writer }()

	// Holding the writer slot, only this goroutine changes s.revoked.
	now := time.Now()
	s.mu.RLock()
	closed, cur := s.closed, s.revoked[memberID]
	var ended []string
	for m, u := range s.revoked {
		if !u.After(now) {
			ended = append(ended, m)
		}
	}
	s.mu.RUnlock()
	if closed {
		return unavailable(fmt.Sprintf("revoke member %q", memberID), errClosed)
	}
	longer := until.After(cur) && until.After(now)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(revokedBucket)
		for _, m := range ended {
			if err := b.Delete([]byte(m)); err != nil {
				return err
			}
		}
		if !longer {
			return nil
		}
		return b.Put([]byte(memberID), []byte(strconv.FormatInt(until.UnixNano(), 10)))
	})
	if err != nil {
		return unavailable(fmt.Sprintf("revoke member %q", memberID), err)
	}
	s.mu.Lock()
	for _, m := range ended {
		delete(s.revoked, m)
	}
	if longer {
		s.revoked[memberID] = until
	}
	s.mu.Unlock()
	return nil
}

// Revoked reports whether memberID is revoked now. It reads memory only.
func (s *Store) Revoked(_ context.Context, memberID string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, unavailable(fmt.Sprintf("check revocation of member %q", memberID), errClosed)
	}
	until, ok := s.revoked[memberID]
	return ok && until.After(time.Now()), nil
}

// Close waits for an Update in progress, then closes the file. Every later
// call fails with store.ErrUnavailable, except Close, which does nothing.
func (s *Store) Close() error {
	s.writer <- struct{}{}
	defer func() { <-s.writer }()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.rooms, s.revoked = nil, nil
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return unavailable("close "+s.path, err)
	}
	return nil
}

// decode reads a room from its stored JSON encoding.
func decode(data []byte) (*room.Room, error) {
	r := new(room.Room)
	if err := json.Unmarshal(data, r); err != nil {
		return nil, err
	}
	return r, nil
}

// unavailable wraps a failure of the file, or the use of a closed Store, so
// that errors.Is(err, store.ErrUnavailable) holds and the message says what
// was being done.
func unavailable(op string, err error) error {
	return fmt.Errorf("boltstore: %s: %w: %w", op, store.ErrUnavailable, err)
}
