package mqtt

import (
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// connectHook answers CONNECT as the client's protocol version requires,
// where mochi v2.7.9 does not.
//
// MQTT 3.1.1 refusals: mochi answers some with MQTT 5 reason codes that
// 3.1.1 reserves (a CONNACK return code is 0x00-0x05). The hook checks a
// 3.1.1 CONNECT before mochi does:
//   - a protocol name or level the server does not speak: CONNACK 0x01
//     (unacceptable protocol version), then close [MQTT-3.1.2-2] (mochi:
//     0x82);
//   - a zero-byte client id with clean session 0: CONNACK 0x02 (identifier
//     rejected), then close [MQTT-3.1.3-8] (mochi: 0x80);
//   - any other malformed CONNECT (the reserved flag set [MQTT-3.1.2-3],
//     flags that contradict the payload, ...): closed without a CONNACK,
//     which has no code for it [MQTT-4.8.0-1].
//
// MQTT 5: the CONNACK tells the client the server's Maximum Packet Size
// (3.2.2.3.6), which the client must not exceed [MQTT-3.2.2-15]. mochi
// enforces it (it closes the connection of a client that sends a larger
// packet) but does not announce it.
type connectHook struct {
	mochi.HookBase
	// maxPacketSize is mochi's MaximumPacketSize (0: no limit).
	maxPacketSize uint32
	log           *slog.Logger
}

func (h *connectHook) ID() string { return "mqstream-connect" }

func (h *connectHook) Provides(b byte) bool {
	return b == mochi.OnPacketRead || b == mochi.OnPacketEncode
}

// OnPacketRead refuses the MQTT 3.1.1 CONNECTs 3.1.1 refuses, with its
// return codes; mochi then closes the connection without answering.
func (h *connectHook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Connect || pk.ProtocolVersion == 5 {
		return pk, nil
	}
	var answer byte // a CONNACK return code; 0: none
	code := pk.ConnectValidate()
	switch {
	case code == packets.ErrProtocolViolationProtocolName, code == packets.ErrProtocolViolationProtocolVersion:
		answer = packets.Err3UnsupportedProtocolVersion.Code
	case code != packets.CodeSuccess:
	case pk.Connect.ClientIdentifier == "" && !pk.Connect.Clean:
		code, answer = packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid.Code
	default:
		return pk, nil
	}
	h.log.Debug("MQTT 3.1.1 connection refused", "client", pk.Connect.ClientIdentifier, "remote", cl.Net.Remote,
		"listener", cl.Net.Listener, "protocol", string(pk.Connect.ProtocolName), "level", pk.ProtocolVersion,
		"reason", code.Reason, "return_code", answer)
	if answer != 0 {
		// The client's protocol version is not set yet: a 3.1.1 CONNACK.
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: answer})
	}
	return pk, packets.ErrRejectPacket
}

// OnPacketEncode adds the Maximum Packet Size to an MQTT 5 CONNACK that
// accepts the client, and keeps a DISCONNECT from an MQTT 3.1.1 client.
// In 3.1.1 only the client sends DISCONNECT; mochi sends one to every
// client it disconnects (a takeover, a server stopping), which 3.1.1
// clients take for a protocol error (mosquitto_sub: "A network protocol
// error occurred"). Its size limit set below the packet's, mochi does not
// write it (ErrPacketTooLarge, which DisconnectClient ignores) and closes
// the connection, which is how a 3.1.1 server ends one.
func (h *connectHook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	switch t := pk.FixedHeader.Type; {
	case t == packets.Connack && pk.ProtocolVersion == 5 && pk.ReasonCode == packets.CodeSuccess.Code && h.maxPacketSize > 0:
		pk.Properties.MaximumPacketSize = h.maxPacketSize
	case t == packets.Disconnect && pk.ProtocolVersion < 5:
		pk.Mods.MaxSize = 1 // a DISCONNECT is two bytes
	}
	return pk
}
