// Package store keeps rooms and carries messages to connected members.
//
// A Store persists rooms and applies each change atomically; a Bus delivers
// a message to a member wherever its connection is held. The default
// implementations keep everything in one process (boltstore, LocalBus);
// several server nodes share a Store and a Bus backed by Redis instead. Every
// Store passes the conformance suite in package storetest.
package store

import (
	"context"
	"errors"
	"time"

	"lepeerchat/room"
)

// ErrNotFound is returned by Get for a room that does not exist.
var ErrNotFound = errors.New("room not found")

// ErrUnavailable wraps every failure of the backing storage, so that callers
// can tell "the store is down" from a refusal by the room's rules.
var ErrUnavailable = errors.New("store unavailable")

// UpdateFunc computes the new state of a room from its current state. It
// receives a private copy of the room, or nil when the room does not exist,
// and returns the room to store, nil to delete it, or an error to leave it
// unchanged. It may be called more than once for one Update and must have
// no side effects.
type UpdateFunc func(current *room.Room) (*room.Room, error)

// Store keeps the state of every room.
type Store interface {
	// Get returns a copy of the room, or ErrNotFound.
	Get(ctx context.Context, id string) (*room.Room, error)
	// Update applies fn to the room atomically: no other change to the
	// same room interleaves. It returns what fn returned; when fn fails,
	// its error is returned unchanged with a nil room and nothing is
	// written. A result whose ID is not id is refused. When ctx has
	// ended, fn is not called and the error wraps ctx.Err().
	Update(ctx context.Context, id string, fn UpdateFunc) (*room.Room, error)
	// IDs lists the ids of every stored room.
	IDs(ctx context.Context) ([]string, error)
	Revocations
	// Close flushes and releases the store. Every later call but Close
	// fails with ErrUnavailable.
	Close() error
}

// Revocations remembers the members gone for good (kicked, or left their
// room), so that the TURN credentials minted for them are refused after a
// restart and by every node sharing the store, until the last of them could
// no longer be used.
type Revocations interface {
	// Revoke records that memberID is revoked until the instant until. A
	// later Revoke of the same member with an earlier until does not
	// shorten it.
	Revoke(ctx context.Context, memberID string, until time.Time) error
	// Revoked reports whether memberID is revoked now: it was revoked
	// with an until still to come.
	Revoked(ctx context.Context, memberID string) (bool, error)
}

// Bus delivers messages to the connections of members, wherever they are
// held.
type Bus interface {
	// Subscribe calls deliver for every message sent to the member until
	// cancel is called. deliver must not block, and may call cancel. A
	// Send that began before cancel returned may still call deliver; no
	// Send that begins after cancel returns does.
	Subscribe(roomID, memberID string, deliver func(msg []byte)) (cancel func())
	// Send delivers msg to every current subscription of the member and
	// reports whether there was any; a member with none is not an error.
	// msg is the caller's again once Send returns (the relay reuses its
	// buffers): neither Send nor deliver may keep it, deliver copies what
	// it keeps.
	Send(ctx context.Context, roomID, memberID string, msg []byte) (delivered bool, err error)
}
