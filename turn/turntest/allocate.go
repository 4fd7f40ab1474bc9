package turntest

import (
	"net"
	"testing"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v5"
)

// Allocate asks the TURN server at addr, over conn, for a relay with the
// credentials, and releases it at once; it returns the relay's address.
// Its error is the server's answer to the allocation (a refusal, for a
// revoked member); anything else that fails ends the test.
func Allocate(t testing.TB, conn net.PacketConn, addr, user, pass string) (net.Addr, error) {
	t.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn, Username: user, Password: pass, LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		return nil, err
	}
	a := relay.LocalAddr()
	return a, relay.Close()
}
