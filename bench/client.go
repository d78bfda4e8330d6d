package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// client is a lean MQTT 3.1.1/5 client for load generation: it writes
// publishes through a buffered writer without per-message allocation or
// goroutines and reports acks and incoming messages through callbacks.
// paho (used by the tests) costs several times more CPU per message, and the
// load generator shares the machine with the broker it measures.
type client struct {
	conn    net.Conn
	r       *bufio.Reader
	version byte

	wmu sync.Mutex // guards w and the encoding scratch
	w   *bufio.Writer
	hdr []byte

	// onAck is called from the read loop for PUBACK and PUBCOMP (the end of
	// a QoS 1/2 publish) with the packet id and reason code.
	onAck func(id uint16, reason byte)
	// onRec is called from the read loop for a successful PUBREC (QoS 2:
	// the broker has the message) before the PUBREL is sent.
	onRec func(id uint16)
	// onPublish is called from the read loop for every incoming PUBLISH; the
	// payload is valid only during the call.
	onPublish func(topic string, qos byte, dup bool, payload []byte)
	// noAck makes the client withhold acks of incoming publishes (tests of
	// loss accounting).
	noAck bool

	subacks chan []byte
	done    chan struct{}
	err     error
}

type clientOptions struct {
	id        string
	version   byte // 4 = 3.1.1, 5 = 5.0
	keepalive uint16
	// receiveMaximum is sent in an MQTT 5 CONNECT (0 = not sent).
	receiveMaximum uint16
	// persistent asks for a session that outlives the connection: clean
	// session 0 (3.1.1), or session expiry 300 s with clean start (5).
	persistent bool
	// bufSize sizes the read and write buffers (0 = 64 KiB, for clients
	// that carry the load; connections of the conn and idle scenarios
	// take small ones so the loader can hold many).
	bufSize int
	// local, if set, is the source address (several loopback sources
	// give more than one source port range to many connections).
	local net.IP
}

func dial(ctx context.Context, addr string, o clientOptions) (*client, error) {
	var d net.Dialer
	if o.local != nil {
		d.LocalAddr = &net.TCPAddr{IP: o.local}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	size := o.bufSize
	if size == 0 {
		size = 64 << 10
	}
	c := &client{
		conn:    conn,
		r:       bufio.NewReaderSize(conn, size),
		w:       bufio.NewWriterSize(conn, size),
		version: o.version,
		subacks: make(chan []byte, 1),
		done:    make(chan struct{}),
	}
	if err := c.connect(o); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *client) connect(o clientOptions) error {
	body := appendString(nil, "MQTT")
	flags := byte(0x02) // clean session / clean start
	if o.persistent && o.version == 4 {
		flags = 0
	}
	body = append(body, o.version, flags)
	body = binary.BigEndian.AppendUint16(body, o.keepalive)
	if o.version == 5 {
		var props []byte
		if o.persistent {
			props = append(props, 0x11) // session expiry interval
			props = binary.BigEndian.AppendUint32(props, 300)
		}
		if o.receiveMaximum > 0 {
			props = append(props, 0x21)
			props = binary.BigEndian.AppendUint16(props, o.receiveMaximum)
		}
		body = appendVarint(body, len(props))
		body = append(body, props...)
	}
	body = appendString(body, o.id)
	pk := appendVarint([]byte{0x10}, len(body))
	if _, err := c.conn.Write(append(pk, body...)); err != nil {
		return err
	}
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, b, err := c.readPacket()
	c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("connack: %w", err)
	}
	if typ>>4 != 2 || len(b) < 2 {
		return fmt.Errorf("expected CONNACK, got packet type %d", typ>>4)
	}
	if b[1] != 0 {
		return fmt.Errorf("connection refused: reason 0x%02x", b[1])
	}
	return nil
}

// start runs the read loop.
func (c *client) start() { go c.readLoop() }

func (c *client) readPacket() (byte, []byte, error) {
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mult
		if d&0x80 == 0 {
			break
		}
		if mult *= 128; i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	if n <= c.r.Size() {
		// Peeked bytes stay valid until the next read; callers copy what they keep.
		b, err := c.r.Peek(n)
		if err != nil {
			return 0, nil, err
		}
		_, _ = c.r.Discard(n)
		return h, b, nil
	}
	b := make([]byte, n)
	_, err = io.ReadFull(c.r, b)
	return h, b, err
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		h, b, err := c.readPacket()
		if err != nil {
			c.err = err
			return
		}
		switch h >> 4 {
		case 3: // PUBLISH
			c.handlePublish(h, b)
		case 4, 7: // PUBACK, PUBCOMP
			if len(b) >= 2 && c.onAck != nil {
				reason := byte(0)
				if len(b) >= 3 {
					reason = b[2]
				}
				c.onAck(binary.BigEndian.Uint16(b), reason)
			}
		case 5: // PUBREC: answer PUBREL (unless refused)
			if len(b) >= 3 && b[2] >= 0x80 {
				if c.onAck != nil {
					c.onAck(binary.BigEndian.Uint16(b), b[2])
				}
				continue
			}
			if len(b) >= 2 && c.onRec != nil {
				c.onRec(binary.BigEndian.Uint16(b))
			}
			c.writeRaw([]byte{0x62, 2, b[0], b[1]})
		case 6: // PUBREL: answer PUBCOMP
			c.writeRaw([]byte{0x70, 2, b[0], b[1]})
		case 9: // SUBACK
			select {
			case c.subacks <- append([]byte(nil), b...):
			default:
			}
		case 13, 14: // PINGRESP, DISCONNECT
		}
	}
}

func (c *client) handlePublish(h byte, b []byte) {
	qos := (h >> 1) & 3
	if len(b) < 2 {
		return
	}
	tl := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+tl {
		return
	}
	topic := string(b[2 : 2+tl])
	rest := b[2+tl:]
	var id uint16
	if qos > 0 {
		if len(rest) < 2 {
			return
		}
		id = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	if c.version == 5 {
		plen, n := binary.Uvarint(rest) // properties length (varint, same encoding for < 2^28)
		if n <= 0 || int(plen)+n > len(rest) {
			return
		}
		rest = rest[n+int(plen):]
	}
	if c.onPublish != nil {
		c.onPublish(topic, qos, h&0x08 != 0, rest)
	}
	if c.noAck {
		return
	}
	switch qos {
	case 1:
		c.writeRaw([]byte{0x40, 2, byte(id >> 8), byte(id)})
	case 2:
		c.writeRaw([]byte{0x50, 2, byte(id >> 8), byte(id)})
	}
}

// writeRaw writes and flushes a small packet.
func (c *client) writeRaw(p []byte) {
	c.wmu.Lock()
	c.w.Write(p)
	c.w.Flush()
	c.wmu.Unlock()
}

// publish buffers a PUBLISH; call flush to send what is buffered.
func (c *client) publish(topic string, qos byte, id uint16, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	if c.version == 5 {
		n++ // empty properties
	}
	h := c.hdr[:0]
	h = append(h, 0x30|qos<<1)
	h = appendVarint(h, n)
	h = appendString(h, topic)
	if qos > 0 {
		h = binary.BigEndian.AppendUint16(h, id)
	}
	if c.version == 5 {
		h = append(h, 0)
	}
	c.hdr = h
	c.w.Write(h)
	_, err := c.w.Write(payload)
	return err
}

func (c *client) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.w.Flush()
}

// subscribe sends one SUBSCRIBE with the filters and waits for its SUBACK
// (the read loop must run); an error if any filter is refused.
func (c *client) subscribe(ctx context.Context, qos byte, filters ...string) error {
	body := []byte{0, 1}
	if c.version == 5 {
		body = append(body, 0)
	}
	for _, f := range filters {
		body = appendString(body, f)
		body = append(body, qos)
	}
	pk := appendVarint([]byte{0x82}, len(body))
	c.writeRaw(append(pk, body...))
	what := filters[0]
	if len(filters) > 1 {
		what = fmt.Sprintf("%s and %d more filters", filters[0], len(filters)-1)
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case b := <-c.subacks:
		if len(b) < len(filters) {
			return fmt.Errorf("subscribe %s: short SUBACK % x", what, b)
		}
		for _, code := range b[len(b)-len(filters):] {
			if code >= 0x80 {
				return fmt.Errorf("subscribe %s refused: % x", what, b)
			}
		}
		return nil
	case <-c.done:
		return fmt.Errorf("subscribe %s: connection closed: %v", what, c.err)
	case <-ctx.Done():
		return fmt.Errorf("subscribe %s: %w", what, ctx.Err())
	case <-timer.C:
		return fmt.Errorf("subscribe %s: no SUBACK", what)
	}
}

func (c *client) close() {
	c.writeRaw([]byte{0xe0, 0})
	c.conn.Close()
}

// appendVarint appends n as an MQTT variable byte integer.
func appendVarint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// appendString appends s with its two-byte big-endian length.
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}
