package shared

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// RecordSource is where groups read records: the streams, their growth
// and their offsets.
type RecordSource interface {
	ListStreams() []streams.StreamInfo
	DescribeStream(name string) (streams.StreamInfo, error)
	Read(name string, from uint64, opts streams.ReadOptions) ([]streams.Record, error)
	// Notify returns a channel closed when the stream grows past next.
	Notify(name string) (ch <-chan struct{}, next uint64, err error)
	OffsetAt(name string, t time.Time) (uint64, error)
	// StreamsChanged returns a channel closed when a stream is created or deleted.
	StreamsChanged() <-chan struct{}
}

// Appender takes dead-lettered records.
type Appender interface {
	Submit(req streams.AppendRequest) error
	CreateStream(ctx context.Context, name string, r streams.Retention) (streams.StreamInfo, error)
}

// Store is what groups need from the stream store: records to read and a
// place for dead letters.
type Store interface {
	RecordSource
	Appender
}

// ProgressStore keeps group definitions and progress: a key-value
// namespace whose writes share the store's group commit.
type ProgressStore interface {
	Scan(prefix []byte, fn func(key, value []byte) error) error
	// Write applies writes durably (under the sync policy) before returning.
	Write(ctx context.Context, writes ...streams.KVWrite) error
	// Submit queues writes; done, if not nil, is called once they are
	// applied (and synced unless noSync) or failed.
	Submit(writes []streams.KVWrite, noSync bool, done func(error)) error
}

// EpochProgress is a ProgressStore whose writes can be fenced by the
// ownership epoch a group runs under (Options.Owner): in a cluster, a
// group started here in an earlier epoch must not overwrite what the
// group's owner wrote since, should this node own the group again in a
// later one before the earlier group has stopped.
type EpochProgress interface {
	ProgressStore
	// InEpoch returns the store whose writes succeed only under epoch.
	InEpoch(epoch uint64) ProgressStore
}

// progressIn returns the progress store for writes under epoch.
func (m *Manager) progressIn(epoch uint64) ProgressStore {
	if ep, ok := m.kv.(EpochProgress); ok && epoch != 0 {
		return ep.InEpoch(epoch)
	}
	return m.kv
}

// Mapper tells which streams can hold topics matching a filter.
type Mapper interface {
	Sources(filter string) (names []string, all bool)
}

// Sentinel errors of the group API.
var (
	ErrGroupNotFound = errors.New("group not found")
	ErrGroupExists   = errors.New("group already exists")
	ErrNotStorable   = errors.New("no mapping rule stores topics matching the filter")
	ErrInvalidGroup  = errors.New("invalid group")
	// ErrNotOwner: another node runs the group (cluster mode).
	ErrNotOwner = errors.New("the group is run by another node")
)

type groupKey struct{ name, filter string }

func (k groupKey) String() string { return "$share/" + k.name + "/" + k.filter }

// Manager runs every consumer group of a node. Transports (package mqtt)
// join and leave members through Join.
type Manager struct {
	opts Options
	log  *slog.Logger
	kv   ProgressStore

	mu struct {
		sync.Mutex
		groups map[groupKey]*group
		closed bool
	}

	done chan struct{}
	wg   sync.WaitGroup
}

// groupMeta is a group's persisted definition.
type groupMeta struct {
	Name          string        `json:"name"`
	Filter        string        `json:"filter"`
	Start         string        `json:"start"`
	Created       time.Time     `json:"created"`
	Strategy      Strategy      `json:"strategy"`
	AckTimeout    time.Duration `json:"ack_timeout"`
	MaxDeliveries int           `json:"max_deliveries"`
	DeadLetter    string        `json:"dead_letter"`
	Window        int           `json:"window"`
	MaxWindow     int           `json:"max_window"`
	ReadAhead     int           `json:"read_ahead"`
	MaxSpan       int           `json:"max_unacked_span"`
	Declared      bool          `json:"declared"`
}

func (m groupMeta) options() GroupOptions {
	return GroupOptions{Strategy: m.Strategy, AckTimeout: m.AckTimeout, MaxDeliveries: m.MaxDeliveries,
		DeadLetter: m.DeadLetter, Window: m.Window, MaxWindow: m.MaxWindow, ReadAhead: m.ReadAhead, MaxUnackedSpan: m.MaxSpan}
}

func metaFor(k groupKey, start Position, created time.Time, o GroupOptions, declared bool) groupMeta {
	return groupMeta{Name: k.name, Filter: k.filter, Start: start.String(), Created: created,
		Strategy: o.Strategy, AckTimeout: o.AckTimeout, MaxDeliveries: o.MaxDeliveries, DeadLetter: o.DeadLetter,
		Window: o.Window, MaxWindow: o.MaxWindow, ReadAhead: o.ReadAhead, MaxSpan: o.MaxUnackedSpan, Declared: declared}
}

// KV keys: "m/" name 0 filter -> meta; "c/" name 0 filter 0 stream -> cursor.
func metaKey(k groupKey) []byte { return []byte("m/" + k.name + "\x00" + k.filter) }
func cursorPrefix(k groupKey) []byte {
	return []byte("c/" + k.name + "\x00" + k.filter + "\x00")
}
func cursorKey(k groupKey, stream string) []byte { return append(cursorPrefix(k), stream...) }

// New creates the manager; Start loads the persisted and declared groups.
func New(opts Options) (*Manager, error) {
	if opts.Store == nil || opts.Progress == nil || opts.Mapper == nil {
		return nil, errors.New("shared: Store, Progress and Mapper are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 100 * time.Millisecond
	}
	if opts.Defaults == (GroupOptions{}) {
		opts.Defaults = DefaultGroupOptions()
	}
	if err := opts.Defaults.Validate(); err != nil {
		return nil, fmt.Errorf("shared: group defaults: %w", err)
	}
	for i, d := range opts.Declared {
		if err := validateKey(d.Name, d.Filter); err != nil {
			return nil, fmt.Errorf("shared: declared group %d: %w", i, err)
		}
		if err := d.Options.Validate(); err != nil {
			return nil, fmt.Errorf("shared: declared group %s: %w", groupKey{d.Name, d.Filter}, err)
		}
	}
	m := &Manager{opts: opts, log: opts.Logger, kv: opts.Progress, done: make(chan struct{})}
	m.mu.groups = map[groupKey]*group{}
	return m, nil
}

// validateKey checks a group name and filter as MQTT allows them in
// $share/<name>/<filter>.
func validateKey(name, filter string) error {
	if name == "" || strings.ContainsAny(name, "/+#") {
		return fmt.Errorf("%w: name %q must be non-empty without '/', '+' or '#'", ErrInvalidGroup, name)
	}
	if filter == "" {
		return fmt.Errorf("%w: empty filter", ErrInvalidGroup)
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if (strings.Contains(l, "#") && (l != "#" || i != len(levels)-1)) || (strings.Contains(l, "+") && l != "+") {
			return fmt.Errorf("%w: filter %q is not a valid topic filter", ErrInvalidGroup, filter)
		}
	}
	return nil
}

// Start loads persisted groups, creates declared ones and starts them.
func (m *Manager) Start() error {
	metas, err := m.persistedGroups()
	if err != nil {
		return err
	}
	for _, meta := range metas {
		if err := meta.options().Validate(); err != nil {
			return fmt.Errorf("shared: group %s: %w", groupKey{meta.Name, meta.Filter}, err)
		}
		k := groupKey{meta.Name, meta.Filter}
		if epoch, ok := m.owns(k); ok {
			start, _ := ParsePosition(meta.Start)
			m.startGroup(k, meta, start, epoch)
		}
	}
	if err := m.createDeclared(); err != nil {
		return err
	}
	m.wg.Add(1)
	go m.watchStreams()
	return nil
}

// persistedGroups reads every persisted group definition.
func (m *Manager) persistedGroups() ([]groupMeta, error) {
	var metas []groupMeta
	err := m.kv.Scan([]byte("m/"), func(_, v []byte) error {
		var meta groupMeta
		if err := json.Unmarshal(v, &meta); err != nil {
			return fmt.Errorf("group metadata: %w", err)
		}
		metas = append(metas, meta)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shared: load groups: %w", err)
	}
	return metas, nil
}

// owns reports whether this node runs group k now, and the epoch.
func (m *Manager) owns(k groupKey) (uint64, bool) {
	if m.opts.Owner == nil {
		return 0, true
	}
	return m.opts.Owner(k.name, k.filter)
}

// createDeclared creates the declared groups this node owns that are
// missing.
func (m *Manager) createDeclared() error {
	for _, d := range m.opts.Declared {
		k := groupKey{d.Name, d.Filter}
		if _, ok := m.owns(k); !ok {
			continue
		}
		// Ownership may move meanwhile (ErrNotOwner): the next owner
		// creates the group.
		if g, err := m.load(k); err != nil || g != nil {
			if err != nil && !errors.Is(err, ErrNotOwner) {
				return fmt.Errorf("shared: declared group %s: %w", k, err)
			}
			continue
		}
		if _, err := m.create(context.Background(), k, d.Start, d.Options, true); err != nil && !errors.Is(err, ErrGroupExists) && !errors.Is(err, ErrNotOwner) {
			return fmt.Errorf("shared: declared group %s: %w", k, err)
		}
	}
	return nil
}

// Refresh applies changes of ownership (Options.Owner): groups this node
// no longer runs, or runs in a new epoch, stop (their members are
// released; a group in a new epoch starts again from its persisted
// progress); persisted and declared groups it now owns start. Standalone
// (no Owner) it does nothing.
func (m *Manager) Refresh() error {
	if m.opts.Owner == nil {
		return nil
	}
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil
	}
	var stale []*group
	for k, g := range m.mu.groups {
		if epoch, ok := m.opts.Owner(k.name, k.filter); !ok || epoch != g.epoch {
			delete(m.mu.groups, k)
			stale = append(stale, g)
		}
	}
	m.mu.Unlock()
	for _, g := range stale {
		g.stop()
	}
	for _, g := range stale {
		<-g.finished
		g.log.Info("consumer group handed over: stopped here")
	}
	metas, err := m.persistedGroups()
	if err != nil {
		return err
	}
	for _, meta := range metas {
		k := groupKey{meta.Name, meta.Filter}
		epoch, ok := m.owns(k)
		if _, running := m.group(k); !ok || running || meta.options().Validate() != nil {
			continue
		}
		start, _ := ParsePosition(meta.Start)
		if g := m.startGroup(k, meta, start, epoch); g != nil {
			g.log.Info("consumer group taken over: running here")
		}
	}
	return m.createDeclared()
}

// load starts group k from its persisted definition, if it has one and
// is not running; it returns the running group (nil if none is
// persisted).
func (m *Manager) load(k groupKey) (*group, error) {
	if g, ok := m.group(k); ok {
		return g, nil
	}
	var meta *groupMeta
	key := metaKey(k)
	err := m.kv.Scan(key, func(got, v []byte) error {
		if string(got) != string(key) {
			return nil
		}
		meta = new(groupMeta)
		return json.Unmarshal(v, meta)
	})
	if err != nil || meta == nil {
		return nil, err
	}
	if err := meta.options().Validate(); err != nil {
		return nil, fmt.Errorf("group %s: %w", k, err)
	}
	epoch, _ := m.owns(k)
	start, _ := ParsePosition(meta.Start)
	if g := m.startGroup(k, *meta, start, epoch); g != nil {
		return g, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNotOwner, k)
}

// Close stops every group after persisting its progress. Idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil
	}
	m.mu.closed = true
	groups := make([]*group, 0, len(m.mu.groups))
	for _, g := range m.mu.groups {
		groups = append(groups, g)
	}
	m.mu.Unlock()
	close(m.done)
	for _, g := range groups {
		g.stop()
	}
	m.wg.Wait()
	return nil
}

// watchStreams tells every group when streams are created or deleted.
func (m *Manager) watchStreams() {
	defer m.wg.Done()
	for {
		ch := m.opts.Store.StreamsChanged()
		select {
		case <-m.done:
			return
		case <-ch:
		}
		m.mu.Lock()
		for _, g := range m.mu.groups {
			g.post(g.refreshSources)
		}
		m.mu.Unlock()
	}
}

// storable reports whether any stream can hold topics matching filter.
func (m *Manager) storable(filter string) bool {
	names, all := m.opts.Mapper.Sources(filter)
	return all || len(names) > 0
}

// optionsFor returns the options of a group created by SUBSCRIBE: a
// declaration with the same name and filter wins over the defaults.
func (m *Manager) optionsFor(k groupKey) (Position, GroupOptions) {
	for _, d := range m.opts.Declared {
		if d.Name == k.name && d.Filter == k.filter {
			return d.Start, d.Options
		}
	}
	return Position{Kind: StartLatest}, m.opts.Defaults
}

// create persists a new group and starts it.
func (m *Manager) create(ctx context.Context, k groupKey, start Position, o GroupOptions, declared bool) (*group, error) {
	if err := validateKey(k.name, k.filter); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidGroup, err)
	}
	if !m.storable(k.filter) {
		return nil, fmt.Errorf("%w: %q", ErrNotStorable, k.filter)
	}
	m.mu.Lock()
	if g, ok := m.mu.groups[k]; ok {
		m.mu.Unlock()
		return g, fmt.Errorf("%w: %s", ErrGroupExists, k)
	}
	if m.mu.closed {
		m.mu.Unlock()
		return nil, errors.New("shared: manager closed")
	}
	m.mu.Unlock()

	meta := metaFor(k, start, m.opts.Now(), o, declared)
	// Initial cursors are computed now and persisted with the definition, so
	// "latest" means latest at creation even if the node crashes right after.
	cursors := m.initialCursors(k.filter, start, meta.Created)
	writes := []streams.KVWrite{{Key: metaKey(k), Value: mustJSON(meta)}}
	for _, c := range cursors {
		writes = append(writes, streams.KVWrite{Key: cursorKey(k, c.stream), Value: c.encode()})
	}
	epoch, _ := m.owns(k)
	if err := m.progressIn(epoch).Write(ctx, writes...); err != nil {
		return nil, fmt.Errorf("create group %s: %w", k, err)
	}
	m.log.Info("consumer group created", "group", k.name, "filter", k.filter, "start", start.String(), "strategy", o.Strategy)
	if g := m.startGroup(k, meta, start, epoch); g != nil {
		return g, nil
	}
	return nil, fmt.Errorf("%w: %s (ownership moved while it was created)", ErrNotOwner, k)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are marshalled
	}
	return b
}

// initialCursors places a cursor on every current source stream.
func (m *Manager) initialCursors(filter string, start Position, created time.Time) []*cursor {
	var out []*cursor
	for _, name := range m.sourceStreams(filter) {
		out = append(out, m.startCursor(name, start, created, created))
	}
	return out
}

// sourceStreams lists the existing streams that can hold matching topics.
func (m *Manager) sourceStreams(filter string) []string {
	names, all := m.opts.Mapper.Sources(filter)
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []string
	for _, info := range m.opts.Store.ListStreams() {
		if streams.IsReserved(info.Name) {
			continue
		}
		if all || want[info.Name] {
			out = append(out, info.Name)
		}
	}
	sort.Strings(out)
	return out
}

// startCursor places a new cursor on a stream: at the group's start
// position if the stream existed when the group was created, else at its
// beginning (all its records are newer than the group).
func (m *Manager) startCursor(stream string, start Position, groupCreated, now time.Time) *cursor {
	info, err := m.opts.Store.DescribeStream(stream)
	if err != nil {
		return newCursor(stream, 0)
	}
	off := info.FirstOffset
	if info.CreatedAt.Before(groupCreated) || now.Equal(groupCreated) {
		off = m.positionOffset(stream, info, start, groupCreated)
	}
	c := newCursor(stream, off)
	c.next = info.NextOffset
	return c
}

// positionOffset resolves a position to an offset of one stream.
func (m *Manager) positionOffset(stream string, info streams.StreamInfo, p Position, latestAt time.Time) uint64 {
	switch p.Kind {
	case StartEarliest:
		return info.FirstOffset
	case StartOffset:
		return min(max(p.Offset, info.FirstOffset), info.NextOffset)
	case StartTime:
		if off, err := m.opts.Store.OffsetAt(stream, p.Time); err == nil {
			return off
		}
	default:
		if off, err := m.opts.Store.OffsetAt(stream, latestAt); err == nil {
			return off
		}
	}
	return info.NextOffset
}

// startGroup starts a group, unless a concurrent create of the same key
// started one first: then that one is returned.
//
// It returns nil, starting nothing, if the manager is closed or, when an
// Owner is set, this node does not own k in epoch now (ownership moved
// since the caller looked: Refresh may have run already, and a group
// started now would run where it is not owned).
func (m *Manager) startGroup(k groupKey, meta groupMeta, start Position, epoch uint64) *group {
	g := newGroup(m, k, meta, start)
	g.epoch = epoch
	g.kv = m.progressIn(epoch)
	m.mu.Lock()
	if existing, ok := m.mu.groups[k]; ok {
		m.mu.Unlock()
		return existing
	}
	if now, ok := m.owns(k); m.mu.closed || !ok || now != epoch {
		m.mu.Unlock()
		return nil
	}
	m.mu.groups[k] = g
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		g.run()
	}()
	return g
}

// ownerCheck returns ErrNotOwner if another node runs group k.
func (m *Manager) ownerCheck(k groupKey) error {
	if _, ok := m.owns(k); !ok {
		return fmt.Errorf("%w: %s", ErrNotOwner, k)
	}
	return nil
}

// running returns group k if it runs here: ErrNotOwner if another node
// runs it, ErrGroupNotFound if none does.
func (m *Manager) running(k groupKey) (*group, error) {
	if g, ok := m.group(k); ok {
		return g, nil
	}
	if err := m.ownerCheck(k); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: %s", ErrGroupNotFound, k)
}

func (m *Manager) group(k groupKey) (*group, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.mu.groups[k]
	return g, ok
}

// Declare creates a group ahead of its members.
func (m *Manager) Declare(ctx context.Context, d Declaration) error {
	if d.Options == (GroupOptions{}) {
		d.Options = m.opts.Defaults
	}
	if err := m.ownerCheck(groupKey{d.Name, d.Filter}); err != nil {
		return err
	}
	if g, err := m.load(groupKey{d.Name, d.Filter}); err != nil || g != nil {
		if err == nil {
			err = fmt.Errorf("%w: %s", ErrGroupExists, groupKey{d.Name, d.Filter})
		}
		return err
	}
	_, err := m.create(ctx, groupKey{d.Name, d.Filter}, d.Start, d.Options, true)
	return err
}

// Delete stops a group and removes its definition and progress. Its members
// stay subscribed in MQTT terms but receive nothing until a SUBSCRIBE
// creates the group again.
func (m *Manager) Delete(ctx context.Context, name, filter string) error {
	k := groupKey{name, filter}
	if err := m.ownerCheck(k); err != nil {
		return err
	}
	m.mu.Lock()
	g, ok := m.mu.groups[k]
	if ok {
		delete(m.mu.groups, k)
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrGroupNotFound, k)
	}
	g.stop()
	<-g.finished
	err := m.kv.Write(ctx, streams.KVWrite{Key: metaKey(k), Delete: true}, streams.KVWrite{Key: cursorPrefix(k), DeletePrefix: true})
	if err != nil {
		return fmt.Errorf("delete group %s: %w", k, err)
	}
	m.log.Info("consumer group deleted", "group", name, "filter", filter)
	return nil
}

// Seek moves a group to a position in every source stream (or only in
// stream, if not empty). Records in flight are forgotten: their acks are
// ignored.
func (m *Manager) Seek(ctx context.Context, name, filter, stream string, p Position) error {
	g, err := m.running(groupKey{name, filter})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	g.post(func() { errc <- g.seek(stream, p) })
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-g.finished:
		return fmt.Errorf("%w: %s", ErrGroupNotFound, g.key)
	}
}

// Groups returns the statistics of every group, sorted by name and filter.
func (m *Manager) Groups(ctx context.Context) []GroupStats {
	m.mu.Lock()
	groups := make([]*group, 0, len(m.mu.groups))
	for _, g := range m.mu.groups {
		groups = append(groups, g)
	}
	m.mu.Unlock()
	out := make([]GroupStats, 0, len(groups))
	for _, g := range groups {
		if st, err := g.stats(ctx); err == nil {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Filter < out[j].Filter
	})
	return out
}

// Group returns the statistics of one group.
func (m *Manager) Group(ctx context.Context, name, filter string) (GroupStats, error) {
	g, err := m.running(groupKey{name, filter})
	if err != nil {
		return GroupStats{}, err
	}
	return g.stats(ctx)
}

// Defaults returns the options groups get unless they declare others.
func (m *Manager) Defaults() GroupOptions { return m.opts.Defaults }

// Progress is a group's persisted position in one stream.
type Progress struct {
	// AckFloor: every offset below is done.
	AckFloor uint64
	// DoneAbove lists, in order, the done offsets above the floor.
	DoneAbove []uint64
}

// StoredProgress reads a group's persisted progress, per stream, from a
// progress store no manager runs on (tools and crash tests).
func StoredProgress(progress ProgressStore, name, filter string) (map[string]Progress, error) {
	k := groupKey{name, filter}
	prefix := cursorPrefix(k)
	out := map[string]Progress{}
	err := progress.Scan(prefix, func(key, v []byte) error {
		stream := string(key[len(prefix):])
		c, err := decodeCursor(stream, v)
		if err != nil {
			return fmt.Errorf("stream %q: %w", stream, err)
		}
		p := Progress{AckFloor: c.floor}
		for off := range c.done {
			p.DoneAbove = append(p.DoneAbove, off)
		}
		sort.Slice(p.DoneAbove, func(i, j int) bool { return p.DoneAbove[i] < p.DoneAbove[j] })
		out[stream] = p
		return nil
	})
	return out, err
}
