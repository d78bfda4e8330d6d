package rpcmux

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []header{
		{kind: kindStream, name: "shard-11", nodeID: "node-1"},
		{kind: kindCall, name: "append", nodeID: ""},
		{kind: kindCall, name: strings.Repeat("s", maxName), nodeID: strings.Repeat("n", maxNodeID)},
	} {
		b, err := appendHeader(nil, h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readHeader(bytes.NewReader(b))
		if err != nil || got != h {
			t.Fatalf("%+v came back as %+v, %v", h, got, err)
		}
	}
	for _, h := range []header{
		{kind: kindCall, name: ""},
		{kind: kindCall, name: strings.Repeat("s", maxName+1)},
		{kind: kindCall, name: "x", nodeID: strings.Repeat("n", maxNodeID+1)},
	} {
		if _, err := appendHeader(nil, h); err == nil {
			t.Fatalf("header %+v accepted", h)
		}
	}
}

func TestBadHeaders(t *testing.T) {
	good, _ := appendHeader(nil, header{kind: kindCall, name: "s", nodeID: "n"})
	for name, b := range map[string][]byte{
		"magic":     []byte("GET / HTTP/1.1\r\n\r\n"),
		"version":   append([]byte("MQSX\x09"), good[5:]...),
		"kind":      append([]byte("MQSX\x01\x07"), good[6:]...),
		"empty":     []byte("MQSX\x01\x01\x00\x00"),
		"truncated": good[:len(good)-1],
	} {
		if _, err := readHeader(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: accepted %q", name, b)
		} else if name != "truncated" && !errors.Is(err, errBadHeader) {
			t.Errorf("%s: %v does not wrap errBadHeader", name, err)
		}
	}
}

func TestFrames(t *testing.T) {
	b, err := appendRequest(nil, []byte("req"))
	if err != nil {
		t.Fatal(err)
	}
	b = appendResponse(b, statusError, []byte("boom"))
	r := bufio.NewReader(bytes.NewReader(b))
	if req, err := readFrame(r); err != nil || string(req) != "req" {
		t.Fatalf("request %q %v", req, err)
	}
	if status, msg, err := readResponse(r); err != nil || status != statusError || string(msg) != "boom" {
		t.Fatalf("response %d %q %v", status, msg, err)
	}
	// A length over MaxFrame is refused before anything is allocated.
	huge := []byte{0xff, 0xff, 0xff, 0xff}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(huge))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("4 GiB frame: %v", err)
	}
	if _, _, err := readResponse(bufio.NewReader(bytes.NewReader([]byte{7, 0, 0, 0, 0}))); err == nil {
		t.Fatal("response status 7 accepted")
	}
}

// TestFrameIsAllocatedAsItArrives: a frame announced at MaxFrame whose
// bytes do not come holds what came, not 64 MiB; one that comes whole
// in pieces is read whole.
func TestFrameIsAllocatedAsItArrives(t *testing.T) {
	announced := binary.BigEndian.AppendUint32(nil, MaxFrame)
	r := &countingReader{r: bytes.NewReader(append(announced, "only this"...))}
	if _, err := readFrame(bufio.NewReader(r)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a cut frame: %v", err)
	}
	if r.largest > 2*frameStep {
		t.Fatalf("a read into a buffer of %d bytes for a frame that sent 9", r.largest)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), (3*frameStep+5)/16)
	whole := append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	got, err := readFrame(bufio.NewReader(bytes.NewReader(whole)))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("a %d-byte frame came back as %d bytes: %v", len(body), len(got), err)
	}
}

// countingReader notes the largest buffer it was asked to fill.
type countingReader struct {
	r       io.Reader
	largest int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.largest = max(c.largest, len(p))
	return c.r.Read(p)
}

// TestGarbageIsRejected sends what is not a header, or a header and a bad
// frame, over real connections: each is closed, and the mux serves on.
func TestGarbageIsRejected(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	b.Handle("echo", echo)
	callHdr, _ := appendHeader(nil, header{kind: kindCall, name: "echo", nodeID: "raw"})
	for name, send := range map[string][]byte{
		"http":        []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"zeros":       make([]byte, 64),
		"version":     append([]byte("MQSX\x02"), callHdr[5:]...),
		"kind":        append([]byte("MQSX\x01\x09"), callHdr[6:]...),
		"huge frame":  append(callHdr, 0xff, 0xff, 0xff, 0xff),
		"short frame": append(callHdr, 0, 0, 0, 9, 'x'),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr(b))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(send); err != nil {
				t.Fatal(err)
			}
			if name == "short frame" {
				_ = c.(*net.TCPConn).CloseWrite() // the frame ends early
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := io.Copy(io.Discard, c)
			if n != 0 || err != nil && !isReset(err) {
				t.Fatalf("got %d bytes back, err %v; want the connection closed", n, err)
			}
		})
	}
	// The mux still serves, and Close does not wait for a connection that
	// sends nothing.
	idle, err := net.Dial("tcp", addr(b))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if got, err := call(a, b, "echo", "ok"); err != nil || got != "a:ok" {
		t.Fatalf("after garbage: %q %v", got, err)
	}
	testutil.Eventually(t, 5*time.Second, "the silent connection accepted", func() bool {
		return openConns(b) == 2 // it and the call's
	})
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > HeaderTimeout/2 {
		t.Fatalf("Close took %s: it waited for a header", d)
	}
}
