package signal

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestControlFramesFitTheLibrarysBuffer(t *testing.T) {
	// wireConn.Write takes each call for one whole frame: the longest
	// control frame a server writes, a 2-byte header and 125 bytes of
	// payload, must be flushed from the library's buffer in one call.
	if writeBuffer < 2+125 {
		t.Fatalf("writeBuffer = %d, below the longest control frame", writeBuffer)
	}
}

func TestNoDataFrameAfterTheCloseFrame(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	w := newWireConn(server, time.Second)
	o := getOutbox()
	o.add([]byte(`{"type":"ok"}`))
	if err := w.writeText(o); err != nil {
		t.Fatal(err)
	}
	closeFrame := []byte{0x88, 0x02, 0x03, 0xe8} // 1000
	if _, err := w.Write(closeFrame); err != nil {
		t.Fatal(err)
	}
	if err := w.writeText(o); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("data after the close frame: err = %v, want net.ErrClosed", err)
	}
	server.Close()
	want := append(appendTextFrame(nil, []byte(`{"type":"ok"}`)), closeFrame...)
	if b := <-got; string(b) != string(want) {
		t.Fatalf("wire carried % x, want % x", b, want)
	}
}
