package signal

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestNoDataFrameAfterTheCloseFrame(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	w := newWireConn(server, time.Second, nil)
	o := getOutbox()
	o.add([]byte(`{"type":"ok"}`))
	if err := w.writeText(o); err != nil {
		t.Fatal(err)
	}
	if err := w.writeControl(opClose, []byte{0x03, 0xe8}); err != nil {
		t.Fatal(err)
	}
	if err := w.writeText(o); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("data after the close frame: err = %v, want net.ErrClosed", err)
	}
	if err := w.writeControl(opPing, nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a ping after the close frame: err = %v, want net.ErrClosed", err)
	}
	server.Close()
	want := append(appendTextFrame(nil, []byte(`{"type":"ok"}`)), 0x88, 0x02, 0x03, 0xe8)
	if b := <-got; string(b) != string(want) {
		t.Fatalf("wire carried % x, want % x", b, want)
	}
}
