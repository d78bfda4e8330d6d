package mqtt

import (
	"context"
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// Message is a publish made through the API rather than an MQTT connection.
type Message struct {
	Topic          string
	Payload        []byte
	QoS            byte
	Retain         bool
	ContentType    string
	ResponseTopic  string
	Correlation    []byte
	UserProperties []streams.UserProperty
	// NoStore delivers the message without storing it: its sender has
	// stored it already (a continuous query's output).
	NoStore bool
	// ClientID is the publisher its record names: a will's client when
	// another node publishes the will of a dead node's client; empty,
	// the API's own id.
	ClientID string
}

// PublishResult says where a published message was stored.
type PublishResult struct {
	Stored bool   `json:"stored"`
	Stream string `json:"stream,omitempty"`
	// Offset is set when Stored (the first record of a stream has 0).
	Offset *uint64 `json:"offset,omitempty"`
}

// apiClientID is the client id API publishes carry (for No Local and the
// records' publisher field).
const apiClientID = "mqstream-api"

// Publish publishes a message as if a client had sent it: the mapping rules
// store it (Publish returns once the record is durable, like a QoS 1 ack),
// then it is retained if asked and delivered to subscribers.
func (b *Broker) Publish(ctx context.Context, m Message) (PublishResult, error) {
	if err := topic.ValidateName(m.Topic); err != nil {
		return PublishResult{}, err
	}
	if m.QoS > 2 {
		return PublishResult{}, fmt.Errorf("qos %d: want 0, 1 or 2", m.QoS)
	}
	if b.opts.MaxPayload > 0 && len(m.Payload) > b.opts.MaxPayload {
		return PublishResult{}, fmt.Errorf("%w: payload of %d bytes exceeds the limit of %d", streams.ErrRecordTooLarge, len(m.Payload), b.opts.MaxPayload)
	}
	var res PublishResult
	if stream, ok := b.ingest.mapper.StreamFor(m.Topic); ok && !m.NoStore {
		publisher := m.ClientID
		if publisher == "" {
			publisher = apiClientID
		}
		rec := streams.Record{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, ClientID: publisher,
			ContentType: m.ContentType, ResponseTopic: m.ResponseTopic, CorrelationData: m.Correlation,
			UserProperties: m.UserProperties}
		type result struct {
			first uint64
			err   error
		}
		done := make(chan result, 1)
		if err := b.opts.Store.Submit(streams.AppendRequest{Stream: stream, Records: []streams.Record{rec},
			Done: func(first uint64, err error) { done <- result{first, err} }}); err != nil {
			return res, err
		}
		select {
		case r := <-done:
			if r.err != nil {
				return res, r.err
			}
			res = PublishResult{Stored: true, Stream: stream, Offset: &r.first}
			b.ingest.stored.Add(1)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		Properties: packets.Properties{ContentType: m.ContentType, ResponseTopic: m.ResponseTopic,
			CorrelationData: m.Correlation},
		PacketID: 1, // the inline client never acknowledges; mochi wants an id on QoS > 0
	}
	for _, up := range m.UserProperties {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: up.Key, Val: up.Value})
	}
	b.ingest.order.wait() // after the subscription changes read before it (order.go)
	injected, err := b.injectAPI(pk)
	if err != nil {
		return res, fmt.Errorf("deliver: %w", err)
	}
	if injected && b.state != nil {
		// Queued for persistent sessions and retained: on disk before
		// the caller is answered, like a publisher's PUBACK.
		if err := b.state.durable(b.state.syncedMark()); err != nil {
			return res, fmt.Errorf("deliver: %w", err)
		}
	}
	return res, nil
}

// injectAPI routes an API publish through the API's inline client when it
// is retained or anyone may take it; it reports whether it did.
func (b *Broker) injectAPI(pk packets.Packet) (bool, error) {
	b.routing.enter()
	defer b.routing.exit()
	remote := b.opts.Remote != nil && b.opts.Remote.Wanted(pk.TopicName)
	if !pk.FixedHeader.Retain && !remote && !b.ingest.subs.hasSubscribers(pk.TopicName) {
		return false, nil
	}
	return true, b.server.InjectPacket(b.apiClient, pk)
}
