package mqtt

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// connectBytes encodes a CONNECT by hand, so that it can be wrong: protocol
// name, level, flags (clean session/start is 0x02) and client id.
func connectBytes(name string, level, flags byte, id string) []byte {
	body := []byte{0, byte(len(name))}
	body = append(body, name...)
	body = append(body, level, flags, 0, 30)
	if level == 5 {
		body = append(body, 0) // no properties
	}
	body = append(body, 0, byte(len(id)))
	body = append(body, id...)
	return append([]byte{packets.Connect << 4, byte(len(body))}, body...)
}

// answer is a packet the server sends: its type and reason (return) code.
type answer struct{ typ, code byte }

// TestBadInput (issue 13, "Bad input"): malformed packets like those the
// Paho suites send on purpose get what the specification requires, and the
// server goes on serving other clients. MQTT 3.1.1 refusals use 3.1.1
// return codes (mochi answered some with MQTT 5 codes: connect.go); an
// MQTT 5 CONNACK announces the Maximum Packet Size the server enforces.
func TestBadInput(t *testing.T) {
	n := startBroker(t, nil, nil, nil) // max payload 1 MiB: packets up to 1 MiB + 64 KiB
	const maxPacket = 1<<20 + 64<<10
	witness := dialRaw(t, n.addr, 5)
	witness.connect("bad-input-witness", true, packets.Properties{})
	var witnessID uint16

	oversized := []byte{packets.Publish << 4}
	for r := maxPacket + 16; ; r >>= 7 { // remaining length, varint
		if r < 128 {
			oversized = append(oversized, byte(r))
			break
		}
		oversized = append(oversized, byte(r&127)|128)
	}
	oversized = append(oversized, 0, 1, 'a', 'x', 'x', 'x') // the rest never comes
	okV4, okV5 := connectBytes("MQTT", 4, 2, "bad-input"), connectBytes("MQTT", 5, 2, "bad-input")

	cases := []struct {
		name    string
		version byte   // how answers are decoded
		send    []byte // after connecting
		want    []answer
		// refused: a CONNACK with a code >= 0x80 (the exact MQTT 5 code is the
		// server's choice) comes before the close.
		refused bool
		// open: the server keeps the connection.
		open bool
	}{
		// CONNECT [MQTT-3.1.2-1] [MQTT-3.1.2-2]: 3.1.1 answers 0x01.
		{name: "3.1.1 bad protocol name", version: 4, send: connectBytes("MQTX", 4, 2, "a"), want: []answer{{packets.Connack, 0x01}}},
		{name: "3.1.1 MQIsdp at level 4", version: 4, send: connectBytes("MQIsdp", 4, 2, "a"), want: []answer{{packets.Connack, 0x01}}},
		{name: "unknown protocol level 6", version: 4, send: connectBytes("MQTT", 6, 2, "a"), want: []answer{{packets.Connack, 0x01}}},
		{name: "5 bad protocol name", version: 5, send: connectBytes("MQTX", 5, 2, "a"), refused: true},
		// CONNECT reserved flag [MQTT-3.1.2-3]: 3.1.1 has no return code for it.
		{name: "3.1.1 reserved flag", version: 4, send: connectBytes("MQTT", 4, 3, "a")},
		{name: "5 reserved flag", version: 5, send: connectBytes("MQTT", 5, 3, "a"), refused: true},
		// Zero-byte client id without clean session/start [MQTT-3.1.3-8]; MQTT 5
		// assigns one [MQTT-3.1.3-6].
		{name: "3.1.1 empty client id, clean session 0", version: 4, send: connectBytes("MQTT", 4, 0, ""), want: []answer{{packets.Connack, 0x02}}},
		{name: "3.1.1 empty client id, clean session 1", version: 4, send: connectBytes("MQTT", 4, 2, ""), want: []answer{{packets.Connack, 0}}, open: true},
		{name: "5 empty client id, clean start 0", version: 5, send: connectBytes("MQTT", 5, 0, ""), want: []answer{{packets.Connack, 0}}, open: true},
		// Wrong fixed-header flags [MQTT-2.2.2-2] [MQTT-3.8.1-1] [MQTT-3.3.1-4]:
		// malformed, the connection is closed (MQTT 5 may say why first).
		{name: "3.1.1 SUBSCRIBE flags 0", version: 4, send: append(okV4, 0x80, 6, 0, 1, 0, 1, '#', 0), want: []answer{{packets.Connack, 0}}},
		{name: "5 SUBSCRIBE flags 0", version: 5, send: append(okV5, 0x80, 7, 0, 1, 0, 0, 1, '#', 0), want: []answer{{packets.Connack, 0}}},
		{name: "3.1.1 PUBLISH QoS 3", version: 4, send: append(okV4, 0x36, 5, 0, 1, 'a', 0, 1), want: []answer{{packets.Connack, 0}}},
		{name: "5 PUBREL flags 0", version: 5, send: append(okV5, 0x60, 2, 0, 1), want: []answer{{packets.Connack, 0}}},
		// Oversized [MQTT-3.2.2-15]: closed (MQTT 5 may send DISCONNECT 0x95 first).
		{name: "3.1.1 oversized PUBLISH", version: 4, send: append(okV4, oversized...), want: []answer{{packets.Connack, 0}}},
		{name: "5 oversized PUBLISH", version: 5, send: append(okV5, oversized...), want: []answer{{packets.Connack, 0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", n.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), version: tc.version}
			wait := 5 * time.Second // for the close
			if tc.open {
				wait = 300 * time.Millisecond // that nothing more comes
			}
			var got []answer
			var end error
			for {
				pk, err := c.read(wait)
				if err != nil {
					end = err
					break
				}
				if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == 0 && tc.version == 5 &&
					pk.Properties.MaximumPacketSize != maxPacket {
					t.Errorf("CONNACK Maximum Packet Size %d, want %d", pk.Properties.MaximumPacketSize, maxPacket)
				}
				if pk.FixedHeader.Type == packets.Disconnect && pk.ReasonCode < 0x80 {
					t.Errorf("DISCONNECT with reason 0x%02x", pk.ReasonCode)
				}
				if pk.FixedHeader.Type != packets.Disconnect { // MQTT 5 may say why it closes
					got = append(got, answer{pk.FixedHeader.Type, pk.ReasonCode})
				}
			}
			closed := errors.Is(end, io.EOF) || errors.Is(end, syscall.ECONNRESET)
			if tc.refused {
				if len(got) != 1 || got[0].typ != packets.Connack || got[0].code < 0x80 {
					t.Fatalf("got %v, want a refusing CONNACK", got)
				}
				got, tc.want = nil, nil
			}
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if tc.open && closed {
				t.Fatalf("connection closed (%v), want it kept", end)
			}
			if !tc.open && !closed {
				t.Fatalf("connection not closed: %v", end)
			}
			witnessID++
			witness.publish(witnessID, 1, "bad/witness", "still here", false)
			witness.expect(packets.Puback)
		})
	}
}
