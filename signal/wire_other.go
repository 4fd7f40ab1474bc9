//go:build !unix

package signal

import "net"

// useRawReads does nothing where reads cannot be made non-blocking by
// hand: the connection is read through its own Read, with a buffer held
// while it waits.
func (c *wireConn) useRawReads(net.Conn) {}
