package mqtt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/topic"
)

// Remote connects the broker to the other nodes of a cluster
// (Options.Remote; nil when standalone): it learns which filters this
// node's clients subscribe to, and carries the messages published here
// to the nodes whose clients subscribed to them (package cluster/routes).
// Messages other nodes forward come back through Broker.DeliverForwarded.
type Remote interface {
	// SetClient records the filters of client's ordinary subscriptions
	// (none: the client has no session here any more). It returns once
	// the other nodes know of the filters, or a bounded time passed.
	SetClient(client string, filters []string)
	// Wanted reports whether another node subscribed to topic.
	Wanted(topic string) bool
	// Forward carries msg to the nodes that subscribed to topic.
	Forward(topic string, msg []byte)
	// Broadcast carries msg to every other node.
	Broadcast(msg []byte)
	// Claim asks every other node to give up a client id
	// (Broker.HandleClaim there) and returns the answers of those that
	// answered within timeout, each with the node that gave it.
	Claim(req []byte, timeout time.Duration) (nodes []string, answers [][]byte)
	// Settle tells node, which handed a session over in its answer to a
	// claim, that the session is installed here (Broker.HandleSettle
	// there), and returns its answer.
	Settle(node string, req []byte, timeout time.Duration) ([]byte, error)
	// Barrier waits until the messages every other node queued for this
	// one before the call have been delivered here, or timeout passed.
	Barrier(timeout time.Duration)
	// HandOver sends a session this stopping node hands over (req, of
	// client) to one other node (Broker.HandleHandOver there) and returns
	// that node and its answer; an error when no node answered within
	// timeout.
	HandOver(client string, req []byte, timeout time.Duration) (node string, answer []byte, err error)
	// Designated reports whether this node is the one to act for node
	// except (which failed): the node with the lowest id among those up.
	Designated(except string) bool
}

// routeHook tells Remote the ordinary subscriptions of every client as
// they change: SUBSCRIBE and UNSUBSCRIBE, a session established (clean
// or resumed), a session that ends. OnSubscribed returns (and the SUBACK
// goes out) once the other nodes know the client's filters, so a message
// published anywhere after the SUBACK reaches it.
type routeHook struct {
	mochi.HookBase
	remote Remote
}

func (h *routeHook) ID() string { return "mqstream-routes" }

func (h *routeHook) Provides(b byte) bool {
	switch b {
	case mochi.OnSubscribed, mochi.OnUnsubscribed, mochi.OnSessionEstablished, mochi.OnDisconnect, mochi.OnClientExpired:
		return true
	}
	return false
}

func (h *routeHook) OnSubscribed(cl *mochi.Client, _ packets.Packet, _ []byte) { h.update(cl) }
func (h *routeHook) OnUnsubscribed(cl *mochi.Client, _ packets.Packet)         { h.update(cl) }
func (h *routeHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	h.update(cl)
}

// OnDisconnect forgets the filters of a session that ends with its
// connection (mochi drops its subscriptions right after this hook).
func (h *routeHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	if expire && !cl.IsTakenOver() && !cl.Net.Inline {
		h.remote.SetClient(cl.ID, nil)
	}
}

func (h *routeHook) OnClientExpired(cl *mochi.Client) { h.remote.SetClient(cl.ID, nil) }

// update sends cl's current filters.
func (h *routeHook) update(cl *mochi.Client) {
	if cl.Net.Inline {
		return
	}
	h.remote.SetClient(cl.ID, routedFilters(cl))
}

// routedFilters lists the filters of cl's subscriptions that other nodes
// must route to this one: not shared subscriptions (consumer groups read
// the streams) and not $SYS (every node has its own).
func routedFilters(cl *mochi.Client) []string {
	subs := cl.State.Subscriptions.GetAll()
	out := make([]string, 0, len(subs))
	for f := range subs {
		if !mochi.IsSharedFilter(f) && !strings.HasPrefix(f, "$SYS") {
			out = append(out, f)
		}
	}
	return out
}

// syncRoutes sends every client's filters (after a restore).
func (b *Broker) syncRoutes() {
	for _, cl := range b.server.Clients.GetAll() {
		if !cl.Net.Inline {
			b.opts.Remote.SetClient(cl.ID, routedFilters(cl))
		}
	}
}

// forward hands a message published on this node (origin: the
// publisher's client id) to the other nodes that subscribed to its topic.
func (h *deliveryHook) forward(pk *packets.Packet, origin string) {
	if h.remote == nil || strings.HasPrefix(pk.TopicName, "$SYS") || !h.remote.Wanted(pk.TopicName) {
		return
	}
	msg, err := encodeForwarded(pk, origin, time.Now().Unix())
	if err != nil {
		h.log.Warn("message not forwarded to other nodes", "client", origin, "topic", pk.TopicName, "error", err)
		return
	}
	h.remote.Forward(pk.TopicName, msg)
}

// DeliverForwarded delivers a message another node forwarded to this
// node's subscribers (as the publisher's own node would, without storing,
// retaining or forwarding it again).
func (b *Broker) DeliverForwarded(msg []byte) {
	<-b.restored // retained messages and sessions kept on disk are back
	if len(msg) > 0 && msg[0] == forwardRetained {
		b.applyRetained(msg)
		return
	}
	if len(msg) > 0 && msg[0] >= forwardWillSet && msg[0] <= forwardWillMark {
		if b.peerWills == nil {
			return
		}
		if err := b.peerWills.apply(msg); err != nil && b.badForwards.Add(1) == 1 {
			b.log.Warn("a will sent by another node does not decode; dropped (logged once)", "error", err)
		}
		return
	}
	pk, origin, err := decodeForwarded(msg, time.Now().Unix())
	if err != nil {
		if b.badForwards.Add(1) == 1 {
			b.log.Warn("a message forwarded by another node does not decode; dropped (logged once)", "error", err)
		}
		return
	}
	d := b.delivery
	b.routing.enter()
	defer b.routing.exit()
	seq := d.recent.reserve() // before the lookup (catchup.go)
	subs, _ := b.ingest.subs.lookup(pk.TopicName)
	d.deliverAll(&pk, origin, subs, seq)
}

// applyRetained installs a retained topic's state another node sent.
func (b *Broker) applyRetained(msg []byte) {
	r := b.delivery.retained
	pk, v, err := decodeRetainedState(msg, time.Now().Unix())
	if err != nil || r.sync == nil {
		if b.badForwards.Add(1) == 1 {
			b.log.Warn("a retained message sent by another node was not applied (logged once)", "error", err)
		}
		return
	}
	r.applyRemote(pk, v)
}

// forwardVersion1 starts a forwarded message.
const forwardVersion1 = 1

var errBadForward = errors.New("mqtt: malformed forwarded message")

// encodeForwarded frames a message for another node: a version byte, the
// publisher's client id, and the message as an MQTT 5 PUBLISH packet (its
// properties carry what subscribers see; a message expiry is the time it
// has left).
func encodeForwarded(pk *packets.Packet, origin string, now int64) ([]byte, error) {
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain},
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Properties: packets.Properties{
			PayloadFormat:     pk.Properties.PayloadFormat,
			PayloadFormatFlag: pk.Properties.PayloadFormatFlag,
			ContentType:       pk.Properties.ContentType,
			ResponseTopic:     pk.Properties.ResponseTopic,
			CorrelationData:   pk.Properties.CorrelationData,
			User:              pk.Properties.User,
		},
		ProtocolVersion: 5,
		// Without it mochi leaves the response topic and correlation data out.
		Mods: packets.Mods{AllowResponseInfo: true},
	}
	if out.FixedHeader.Qos > 0 {
		out.PacketID = 1 // unused; a QoS 1/2 PUBLISH must carry one
	}
	if pk.Properties.MessageExpiryInterval > 0 && pk.Expiry > 0 {
		left := pk.Expiry - now
		if left <= 0 {
			return nil, fmt.Errorf("expired")
		}
		out.Properties.MessageExpiryInterval = uint32(left)
	}
	var buf bytes.Buffer
	buf.WriteByte(forwardVersion1)
	var n [binary.MaxVarintLen64]byte
	buf.Write(n[:binary.PutUvarint(n[:], uint64(len(origin)))])
	buf.WriteString(origin)
	if err := out.PublishEncode(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeForwarded reads a message encodeForwarded framed.
func decodeForwarded(msg []byte, now int64) (packets.Packet, string, error) {
	var pk packets.Packet
	if len(msg) < 1 || msg[0] != forwardVersion1 {
		return pk, "", fmt.Errorf("%w: version", errBadForward)
	}
	r := bytes.NewReader(msg[1:])
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(r.Len()) {
		return pk, "", fmt.Errorf("%w: origin", errBadForward)
	}
	origin := make([]byte, n)
	_, _ = r.Read(origin)
	hb, err := r.ReadByte()
	if err != nil {
		return pk, "", fmt.Errorf("%w: header", errBadForward)
	}
	if err := pk.FixedHeader.Decode(hb); err != nil || pk.FixedHeader.Type != packets.Publish {
		return pk, "", fmt.Errorf("%w: header", errBadForward)
	}
	remaining, _, err := packets.DecodeLength(r)
	if err != nil || remaining != r.Len() {
		return pk, "", fmt.Errorf("%w: length", errBadForward)
	}
	// A copy: the message's buffer holds the whole batch it came in.
	body := make([]byte, remaining)
	_, _ = r.Read(body)
	pk.ProtocolVersion = 5
	if err := pk.PublishDecode(body); err != nil {
		return pk, "", fmt.Errorf("%w: %w", errBadForward, err)
	}
	if err := topic.ValidateName(pk.TopicName); err != nil {
		return pk, "", fmt.Errorf("%w: %w", errBadForward, err)
	}
	pk.PacketID = 0
	pk.Origin = string(origin)
	pk.Created = now
	if pk.Properties.MessageExpiryInterval > 0 {
		pk.Expiry = now + int64(pk.Properties.MessageExpiryInterval)
	}
	return pk, pk.Origin, nil
}
