//go:build !linux

package signal

import "errors"

// poller is Linux's (poller_linux.go). Elsewhere every session keeps a
// goroutine, which waits for data in Go's network poller.
type poller struct{}

func newPoller(func(*session)) (*poller, error) { return nil, errors.New("no epoll here") }

func (*poller) park(*session) error { return errors.New("no epoll here") }
func (*poller) forget(*session)     {}
func (*poller) wake(*session)       {}
func (*poller) close() error        { return nil }
