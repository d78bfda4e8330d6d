package cq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Publisher publishes output records on MQTT: the node's broker
// (node/queries.go adapts *mqtt.Broker).
type Publisher interface {
	// Deliver hands m to the broker: its subscribers on this node and, in
	// cluster mode, on the others, and the retained messages if m.Retain.
	// It does not store m in any stream. It returns once the broker has
	// taken m (with persistent sessions, once it is queued on disk).
	Deliver(ctx context.Context, m Message) error
	// StreamFor says which stream the topic mapping rules store topic in.
	StreamFor(topic string) (stream string, ok bool)
}

// Message is an output record to publish on MQTT.
type Message struct {
	Topic          string
	Payload        []byte
	QoS            byte
	Retain         bool
	ContentType    string
	UserProperties []streams.UserProperty
}

// The publication of a query's output (WITH (topic = ...)) follows the
// output stream, not the windows: a second loop of the query reads its
// output stream from the offset it has published up to, and publishes
// each record the query wrote, on the record's topic, as a client's
// publish would be:
//
//   - the mapping rules store a copy in the stream they name for the topic
//     (so $share groups, which read streams, and retention work on it),
//     unless that stream is the query's own output (the record is there
//     already) or its input (which would feed the output back into it);
//     the copies of a batch are appended together and are durable before
//     any is delivered;
//   - then the broker delivers it to the topic's subscribers.
//
// The offset published up to is written in the key/value namespace after
// the batch is delivered. A crash in between publishes the batch again:
// the output stream holds each row exactly once, MQTT and the copies get
// it at least once. A new query publishes from its output's first record;
// a restored query without that offset (created before publication
// existed) from its output's end.

// pubKey keeps the offset of the output stream published up to.
func pubKey(id string) []byte { return []byte("p/" + id) }

// publishOnce publishes the query's output until an error.
func (r *runner) publishOnce(ctx context.Context) error {
	m, c := r.m, r.c
	if m.opts.Publisher == nil {
		<-ctx.Done()
		return errors.New("this node has no MQTT broker to publish on")
	}
	next, err := r.publishedUpTo()
	if err != nil {
		return err
	}
	r.setPublishError(nil)
	for {
		recs, err := m.opts.Reader.Read(c.Name, next, streams.ReadOptions{MaxRecords: readBatch})
		if err != nil {
			return fmt.Errorf("read output stream %s: %w", c.Name, err)
		}
		if len(recs) > 0 {
			n, err := r.publishBatch(ctx, recs)
			if err != nil {
				return err
			}
			next = recs[len(recs)-1].Offset + 1
			r.hintPublished(next)
			r.mu.Lock()
			r.mu.info.Published += n
			r.mu.Unlock()
			continue
		}
		notify, end, err := m.opts.Reader.Notify(c.Name)
		if err != nil {
			return fmt.Errorf("output stream %s: %w", c.Name, err)
		}
		if next < end {
			continue
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// publishedUpTo returns the offset of the output stream to publish from.
func (r *runner) publishedUpTo() (uint64, error) {
	v, found, err := r.place.kv.Get(pubKey(r.def.ID))
	if err != nil {
		return 0, fmt.Errorf("publication progress: %w", err)
	}
	if !found {
		return r.outputEnd()
	}
	o, err := decodeHint(v)
	return uint64(o), err
}

// initPublished makes sure a restored query has publication progress
// before its runner starts: without any (created before publication
// existed), its output so far was never meant for MQTT, and it publishes
// from the output's current end.
func (r *runner) initPublished() error {
	kv := r.place.kv
	if _, found, err := kv.Get(pubKey(r.def.ID)); err != nil || found {
		return err
	}
	end, err := r.outputEnd()
	if err != nil {
		return err
	}
	return kv.Write(r.ctx, streams.KVWrite{Key: pubKey(r.def.ID), Value: encodeHint(int64(end))})
}

// outputEnd returns the next offset of the output stream.
func (r *runner) outputEnd() (uint64, error) {
	info, err := r.m.opts.Reader.DescribeStream(r.c.Name)
	if errors.Is(err, streams.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("output stream %s: %w", r.c.Name, err)
	}
	return info.NextOffset, nil
}

// publishBatch stores the copies of the query's records among recs, then
// delivers them, in order. It returns how many it published.
func (r *runner) publishBatch(ctx context.Context, recs []streams.Record) (int64, error) {
	m, c, id := r.m, r.c, r.def.ID
	var mine []*streams.Record
	copies := map[string][]streams.Record{}
	var order []string
	for i := range recs {
		rec := &recs[i]
		if !writtenBy(rec, id) {
			continue // not the query's: someone else's publish, delivered by the broker already
		}
		mine = append(mine, rec)
		to, ok := m.opts.Publisher.StreamFor(rec.Topic)
		if !ok || to == c.Name || to == c.Source || c.Join != nil && to == c.Join.Right {
			continue
		}
		if copies[to] == nil {
			order = append(order, to)
		}
		copies[to] = append(copies[to], streams.Record{Topic: rec.Topic, Payload: rec.Payload, QoS: rec.QoS, Retain: rec.Retain,
			ContentType: rec.ContentType, UserProperties: rec.UserProperties})
	}
	// Submit every copy, then wait for all: one commit for the batch.
	done := make(chan error, len(order))
	for _, to := range order {
		if err := m.opts.Writer.Submit(streams.AppendRequest{Stream: to, Records: copies[to], Done: func(_ uint64, err error) {
			if err != nil {
				err = fmt.Errorf("store the copy in stream %s: %w", to, err)
			}
			done <- err
		}}); err != nil {
			done <- fmt.Errorf("store the copy in stream %s: %w", to, err)
		}
	}
	for range order {
		if err := <-done; errors.Is(err, streams.ErrStreamNotFound) {
			// The mapping rules name a stream that does not exist and may
			// not be created (streams.auto_create is off): a client's
			// publish would not be stored either; deliver it all the same.
			r.setPublishError(err)
			r.m.log.Warn("continuous query output not stored in the stream its topic maps to", "query", id, "error", err)
		} else if err != nil {
			return 0, err
		}
	}
	for _, rec := range mine {
		err := m.opts.Publisher.Deliver(ctx, Message{Topic: rec.Topic, Payload: rec.Payload, QoS: rec.QoS, Retain: rec.Retain,
			ContentType: rec.ContentType, UserProperties: rec.UserProperties})
		if err != nil {
			return 0, fmt.Errorf("publish on %s: %w", rec.Topic, err)
		}
	}
	return int64(len(mine)), nil
}

// hintPublished records the offset published up to. Losing it publishes
// again, never loses a publication.
func (r *runner) hintPublished(next uint64) {
	id := r.def.ID
	err := r.place.kv.Submit([]streams.KVWrite{{Key: pubKey(id), Value: encodeHint(int64(next))}}, true, func(err error) {
		if err != nil {
			r.m.log.Warn("continuous query publication progress not written", "query", id, "error", err)
		}
	})
	if err != nil {
		r.m.log.Warn("continuous query publication progress not written", "query", id, "error", err)
	}
}

func (r *runner) setPublishError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.info.PublishError = ""
	if err != nil {
		r.mu.info.PublishError = err.Error()
	}
}

// retry runs once until the runner stops, again after each error after a
// growing pause; what names the loop in logs.
func (r *runner) retry(what string, once func(context.Context) error, fail func(error)) {
	log := r.m.log.With("query", r.def.ID)
	pause := 100 * time.Millisecond
	for {
		err := once(r.ctx)
		if r.ctx.Err() != nil || errors.Is(err, errCrash) {
			return
		}
		if errors.Is(err, ErrStateLimit) {
			r.stateLimited(err)
			return
		}
		fail(err)
		log.Error("continuous query failed; restarting from its progress", "loop", what, "error", err, "pause", pause)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(pause*2, 30*time.Second)
	}
}
