//go:build !unix

package signal

import "net"

// useRawIO does nothing where reads and writes cannot be made
// non-blocking by hand: the connection is read through its own Read, with
// a buffer held while it waits, and written through its own Write.
func (c *wireConn) useRawIO(net.Conn) {}
