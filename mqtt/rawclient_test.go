package mqtt

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// rawClient is a minimal MQTT client for tests that must choose packet
// identifiers and decide when (and whether) to acknowledge, which paho
// clients do on their own. It speaks MQTT 3.1.1 (version 4) or 5 over TCP,
// encoding and decoding with mochi's packets package.
type rawClient struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	version byte
	// early holds PUBLISH packets that came before the SUBACK being
	// waited for (allowed [MQTT-3.8.4]); read returns them first.
	early []packets.Packet
}

// dialRaw opens a TCP connection; connect must be called next.
func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), version: version}
}

// connect sends CONNECT and returns the CONNACK.
func (c *rawClient) connect(id string, clean bool, props packets.Properties) packets.Packet {
	c.t.Helper()
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 30, Clean: clean,
		},
		Properties: props,
	})
	ack := c.expect(packets.Connack)
	if ack.ReasonCode != 0 {
		c.t.Fatalf("connect %s: reason 0x%02x", id, ack.ReasonCode)
	}
	return ack
}

// send encodes and writes one packet.
func (c *rawClient) send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.version
	pk.Mods.AllowResponseInfo = true
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		err = fmt.Errorf("rawClient cannot send packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next packet from the server, or an error (a timeout
// included) if none arrives within d.
func (c *rawClient) read(d time.Duration) (packets.Packet, error) {
	if len(c.early) > 0 {
		pk := c.early[0]
		c.early = c.early[1:]
		return pk, nil
	}
	c.conn.SetReadDeadline(time.Now().Add(d))
	var pk packets.Packet
	b, err := c.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = c.version
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Pingresp:
	default:
		err = fmt.Errorf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	return pk, err
}

// expect reads the next packet and fails the test unless it has type typ.
func (c *rawClient) expect(typ byte) packets.Packet {
	c.t.Helper()
	pk, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for packet type %d: %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		c.t.Fatalf("got packet type %d (id %d), want %d", pk.FixedHeader.Type, pk.PacketID, typ)
	}
	return pk
}

// expectOneOf reads the next packet and fails the test unless its type is
// one of types.
func (c *rawClient) expectOneOf(types ...byte) packets.Packet {
	c.t.Helper()
	pk, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for packet types %v: %v", types, err)
	}
	for _, typ := range types {
		if pk.FixedHeader.Type == typ {
			return pk
		}
	}
	c.t.Fatalf("got packet type %d, want one of %v", pk.FixedHeader.Type, types)
	return pk
}

// subscribe subscribes with packet id id and waits for the SUBACK.
func (c *rawClient) subscribe(id uint16, subs ...packets.Subscription) packets.Packet {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id, Filters: subs})
	return c.suback()
}

// suback waits for a SUBACK; PUBLISH packets before it are kept for read.
func (c *rawClient) suback() packets.Packet {
	c.t.Helper()
	var early []packets.Packet
	for {
		pk := c.expectOneOf(packets.Suback, packets.Publish)
		if pk.FixedHeader.Type == packets.Suback {
			c.early = append(c.early, early...)
			return pk
		}
		early = append(early, pk)
	}
}

// publish sends a PUBLISH (without waiting for its ack).
func (c *rawClient) publish(id uint16, qos byte, topic, payload string, retain bool) {
	c.t.Helper()
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		PacketID:    id, TopicName: topic, Payload: []byte(payload),
	})
}

// ack sends the acknowledgement of type typ (PUBACK, PUBREC, PUBREL, PUBCOMP) for id.
func (c *rawClient) ack(typ byte, id uint16) {
	c.t.Helper()
	fh := packets.FixedHeader{Type: typ}
	if typ == packets.Pubrel {
		fh.Qos = 1
	}
	c.send(packets.Packet{FixedHeader: fh, PacketID: id})
}

// drop closes the connection without DISCONNECT (as a network failure would).
func (c *rawClient) drop() { c.conn.Close() }
