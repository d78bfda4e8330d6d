package cq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// DropStream deletes stream name and its records (DROP STREAM, DELETE
// /v1/streams/{name}). It refuses while a query or view of this node
// reads the stream or writes into it, naming them: their output or state
// would silently stop making sense, so they are terminated first, on
// purpose. While the stream is being deleted, queries naming it cannot be
// created (Create checks Manager.mu.dropping).
func (m *Manager) DropStream(ctx context.Context, name string) error {
	m.mu.Lock()
	if r := m.mu.queries[name]; r != nil && r.view != nil {
		m.mu.Unlock()
		return sqlError(query.Pos{}, "%s is a view: DROP VIEW %s removes it", name, name)
	}
	readers, writers := m.usersLocked(name)
	if len(readers)+len(writers) > 0 {
		m.mu.Unlock()
		return InUse(name, readers, writers)
	}
	if m.mu.dropping[name] {
		m.mu.Unlock()
		return sqlError(query.Pos{}, "stream %s is being dropped by another request", name)
	}
	m.mu.dropping[name] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.mu.dropping, name)
		m.mu.Unlock()
	}()
	if err := m.opts.Writer.DeleteStream(ctx, name); err != nil {
		if errors.Is(err, streams.ErrStreamNotFound) {
			return fmt.Errorf("drop stream %s: %w", name, err)
		}
		return fmt.Errorf("cq: drop stream %s: %w", name, err)
	}
	m.log.Info("stream dropped", "stream", name)
	return nil
}

// Users names the queries and views of this node that read stream name
// (readers) or write into it (writers): what keeps DropStream from
// dropping it. A view is labelled "(view)".
func (m *Manager) Users(name string) (readers, writers []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.usersLocked(name)
}

func (m *Manager) usersLocked(name string) (readers, writers []string) {
	for id, r := range m.mu.queries {
		if r.c == nil { // no longer compiles: it reads and writes nothing
			continue
		}
		label := id
		if r.view != nil {
			label += " (view)"
		}
		if r.c.Source == name || r.c.Join != nil && r.c.Join.Right == name {
			readers = append(readers, label)
		}
		if r.c.Name == name && r.view == nil || r.c.LateStream == name {
			writers = append(writers, label)
		}
	}
	return readers, writers
}

// InUse is the error of a DROP STREAM refused because queries read stream
// name or write into it (readers and writers, as Users names them): it
// wraps query.ErrStreamInUse and names them.
func InUse(name string, readers, writers []string) error {
	return &query.Error{Code: query.CodeSQL, Message: inUseMessage(name, readers, writers), Err: query.ErrStreamInUse}
}

// inUseMessage says which queries keep stream name from being dropped,
// and how to end them.
func inUseMessage(name string, readers, writers []string) string {
	slices.Sort(readers)
	slices.Sort(writers)
	var b strings.Builder
	fmt.Fprintf(&b, "stream %s is in use:", name)
	if len(readers) > 0 {
		fmt.Fprintf(&b, " read by %s", strings.Join(readers, ", "))
	}
	if len(writers) > 0 {
		if len(readers) > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " written by %s", strings.Join(writers, ", "))
	}
	b.WriteString("; TERMINATE QUERY (DROP VIEW for a view) each of them first, then DROP STREAM " + name)
	return b.String()
}
