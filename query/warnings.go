package query

import (
	"context"
	"slices"
	"sync"
)

// Warnings: a statistics table gathered from the nodes of a cluster
// answers with the rows of the nodes that answered; its source calls Warn
// for each node left out, and the query's result carries the warnings
// (Result.Warnings, "warnings" in POST /v1/query, printed by the shell).

type warningsKey struct{}

// warnings collects the warnings of one query.
type warnings struct {
	mu   sync.Mutex // guards list and partial
	list []string
	// partial: a warning says that what was asked for may be among what
	// was left out (WarnPartial), not only that some figures are.
	partial bool
}

// Warn adds msg to the warnings of the query running under ctx, once
// however often it is given; it does nothing outside a query. Sources of
// statistics tables call it when they answer with part of their rows.
func Warn(ctx context.Context, msg string) {
	w, ok := ctx.Value(warningsKey{}).(*warnings)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Contains(w.list, msg) {
		w.list = append(w.list, msg)
	}
}

// WarnPartial is Warn for what may hide a row asked for: a node that did
// not answer, or that runs things (a suspect: perhaps up), or a shard
// without a leader; not a node known to be down, which runs nothing.
func WarnPartial(ctx context.Context, msg string) {
	Warn(ctx, msg)
	if w, ok := ctx.Value(warningsKey{}).(*warnings); ok {
		w.mu.Lock()
		w.partial = true
		w.mu.Unlock()
	}
}

// withWarnings returns ctx carrying a new collector of warnings.
func withWarnings(ctx context.Context) (context.Context, *warnings) {
	w := &warnings{}
	return context.WithValue(ctx, warningsKey{}, w), w
}

// take returns the warnings collected, sorted (nil if none).
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := slices.Clone(w.list)
	slices.Sort(out)
	return out
}

// CollectWarnings returns ctx carrying a new collector of warnings, and
// the func that returns those collected under it (sorted, nil if none),
// and whether one was given with WarnPartial: for callers other than a
// query (the REST API's lists and lookups) that read sources which Warn.
func CollectWarnings(ctx context.Context) (context.Context, func() (list []string, partial bool)) {
	ctx, w := withWarnings(ctx)
	return ctx, func() ([]string, bool) {
		list := w.take()
		w.mu.Lock()
		defer w.mu.Unlock()
		return list, w.partial
	}
}
