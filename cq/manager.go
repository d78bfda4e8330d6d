package cq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// Reader reads the streams: the local store (*streams.Store).
type Reader interface {
	DescribeStream(name string) (streams.StreamInfo, error)
	Read(name string, from uint64, opts streams.ReadOptions) ([]streams.Record, error)
	// Notify returns a channel closed when the stream grows past next.
	Notify(name string) (ch <-chan struct{}, next uint64, err error)
	// OffsetAt returns the first offset whose timestamp is at or after t.
	OffsetAt(name string, t time.Time) (uint64, error)
}

// Writer creates output streams and appends to them: the store, or in
// cluster mode the shards in front of it.
type Writer interface {
	Submit(req streams.AppendRequest) error
	CreateStream(ctx context.Context, name string, r streams.Retention) (streams.StreamInfo, error)
	DeleteStream(ctx context.Context, name string) error
}

// KV keeps the query definitions and progress hints (*streams.KV).
type KV interface {
	Get(key []byte) (value []byte, ok bool, err error)
	Scan(prefix []byte, fn func(key, value []byte) error) error
	Write(ctx context.Context, writes ...streams.KVWrite) error
	Submit(writes []streams.KVWrite, noSync bool, done func(error)) error
}

// Options configure a Manager.
type Options struct {
	Reader Reader // required
	Writer Writer // required
	KV     KV     // required
	// Publisher publishes the output of queries with WITH (topic = ...)
	// on MQTT; nil refuses such queries.
	Publisher Publisher
	// Homes, in a cluster, runs each query on the node leading its home
	// shard (homes.go); KV then reads every definition this node's
	// replicas hold. Nil runs every query here, kept in KV.
	Homes Homes
	// IdleTimeout closes windows when input stops: once the query has read
	// every record, the watermark is at least now - IdleTimeout. 0 means
	// 10 s.
	IdleTimeout time.Duration
	// Tick is how often an idle query checks for windows to close; 0 means
	// 250 ms.
	Tick time.Duration
	// HintInterval bounds how often an idle query records a watermark that
	// moved without output; 0 means 1 s.
	HintInterval time.Duration
	// MaxStateBytes pauses a query whose state (estimated: state.go)
	// grows past it; 0 means no limit.
	MaxStateBytes int64
	// Now is the clock of the idle timeout; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger

	// afterOutput, if set, is called once a request of output records is
	// durable, before its progress hint is written; returning true stops
	// the query there, as a crash would (tests).
	afterOutput func(id string) (crash bool)
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 10 * time.Second // a few missed sensor reports; well over commit latency
	}
	if o.Tick == 0 {
		o.Tick = 250 * time.Millisecond // windows close within IdleTimeout + Tick
	}
	if o.HintInterval == 0 {
		o.HintInterval = time.Second // at most one small write per second per idle query
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Reader == nil {
		errs = append(errs, errors.New("reader is nil"))
	}
	if o.Writer == nil {
		errs = append(errs, errors.New("writer is nil"))
	}
	if o.KV == nil {
		errs = append(errs, errors.New("kv is nil"))
	}
	if o.IdleTimeout < 0 || o.Tick < 0 || o.HintInterval < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if o.MaxStateBytes < 0 {
		errs = append(errs, errors.New("max state bytes must not be negative (0 = no limit)"))
	}
	return errors.Join(errs...)
}

// Manager runs the continuous queries of a node: one runner goroutine per
// query. It implements query.Queries.
type Manager struct {
	opts Options
	log  *slog.Logger
	ctx  context.Context // canceled by Close
	stop context.CancelFunc
	// pushCtx ends the push queries: canceled by EndPushes and Close.
	pushCtx   context.Context
	endPushes context.CancelFunc
	wg        sync.WaitGroup

	mu struct {
		sync.Mutex
		// queries are the running queries by id; pushes counts the push
		// queries running; closed refuses new ones; busy holds the ids
		// that a Terminate, Pause or Resume is changing (control.go);
		// dropping the streams a DropStream is deleting (drop.go).
		queries  map[string]*runner
		busy     map[string]bool
		dropping map[string]bool
		seq      uint64 // numbers INSERT INTO queries (seqKey)
		pushes   int
		closed   bool
	}
}

var _ query.Queries = (*Manager)(nil)

// New creates a manager; Start restores the persisted queries.
func New(opts Options) (*Manager, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("cq: invalid options: %w", err)
	}
	m := &Manager{opts: opts, log: opts.Logger.With("component", "cq")}
	m.ctx, m.stop = context.WithCancel(context.Background())
	m.pushCtx, m.endPushes = context.WithCancel(m.ctx)
	m.mu.queries = map[string]*runner{}
	m.mu.busy = map[string]bool{}
	m.mu.dropping = map[string]bool{}
	return m, nil
}

// Start restores the queries kept in the key/value namespace and starts
// them. A query whose SQL no longer compiles is listed with an error. In
// a cluster it does nothing: Reconcile starts the queries this node
// leads once the shards run.
func (m *Manager) Start() error {
	if m.opts.Homes != nil {
		return nil
	}
	defs, err := m.definitions()
	if err != nil {
		return err
	}
	seq, err := nextInsertSeq(m.opts.KV)
	if err != nil {
		return fmt.Errorf("cq: query numbers: %w", err)
	}
	m.mu.Lock()
	m.mu.seq = seq
	m.mu.Unlock()
	for _, d := range defs {
		r := m.prepare(d)
		if !m.add(r) {
			return errors.New("cq: manager closed")
		}
		if r.runnable() {
			m.launch(r)
			m.log.Info("continuous query restored", "query", d.ID, "source", r.c.Source)
		}
	}
	return nil
}

func (m *Manager) add(r *runner) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return false
	}
	m.mu.queries[r.def.ID] = r
	return true
}

func (m *Manager) launch(r *runner) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		r.run()
	}()
}

// Create compiles sql (CREATE STREAM, INSERT INTO or CREATE VIEW), keeps
// its definition, creates its output stream (CREATE STREAM) and starts
// it.
func (m *Manager) Create(ctx context.Context, sql string) (query.QueryInfo, error) {
	c, err := query.CompileContinuousIn(sql, m.resolve)
	if err != nil {
		return query.QueryInfo{}, err
	}
	d := definition{ID: c.Name, SQL: strings.TrimSpace(sql), Created: m.opts.Now().UTC()}
	if d.From, err = m.checkCreate(ctx, c); err != nil {
		return query.QueryInfo{}, err
	}
	if c.Hints.StartLatest {
		info, err := m.opts.Reader.DescribeStream(c.Source)
		if err != nil {
			return query.QueryInfo{}, fmt.Errorf("cq: stream %s: %w", c.Source, err)
		}
		d.Start = info.NextOffset
	}
	p, err := m.placeOf(homeOf(c))
	if err != nil {
		return query.QueryInfo{}, err
	}
	var kept uint64 // the number of the last INSERT INTO kept at p
	if m.opts.Homes != nil {
		d.Home, d.Everywhere = homeOf(c), c.Kind == query.KindView
		if kept, err = nextInsertSeq(p.kv); err != nil {
			return query.QueryInfo{}, fmt.Errorf("cq: query numbers: %w", err)
		}
		if c.Kind == query.KindInsert {
			// Two creations racing on the previous leader may have
			// left the number of the first: never reuse a kept id.
			highest, err := highestInsertSeq(p.kv, c.Name)
			if err != nil {
				return query.QueryInfo{}, fmt.Errorf("cq: query numbers: %w", err)
			}
			kept = max(kept, highest)
		}
		if c.Kind != query.KindInsert {
			if dup, err := m.definedElsewhere(d.ID); err != nil || dup {
				if err == nil {
					err = sqlError(query.Pos{}, "query %s already exists (SHOW QUERIES lists them)", d.ID)
				}
				return query.QueryInfo{}, err
			}
		}
	}
	r := newRunner(m, d, c, p)
	m.mu.Lock()
	m.mu.seq = max(m.mu.seq, kept)
	if c.Kind == query.KindInsert {
		// A new id, never one a terminated query had: its output records
		// may still be in the stream, and would be taken as progress.
		for d.ID == c.Name || m.mu.queries[d.ID] != nil {
			m.mu.seq++
			d.ID = fmt.Sprintf("%s_insert_%d", c.Name, m.mu.seq)
		}
		r = newRunner(m, d, c, p)
	}
	seq := m.mu.seq
	switch {
	case m.mu.closed:
		m.mu.Unlock()
		return query.QueryInfo{}, errors.New("cq: manager closed")
	case m.mu.queries[d.ID] != nil:
		m.mu.Unlock()
		return query.QueryInfo{}, sqlError(query.Pos{}, "query %s already exists (SHOW QUERIES lists them)", d.ID)
	case m.mu.dropping[c.Source] || m.mu.dropping[c.Name] && c.Kind != query.KindView:
		m.mu.Unlock()
		return query.QueryInfo{}, sqlError(query.Pos{}, "a stream the query names is being dropped (DROP STREAM)")
	}
	m.mu.queries[d.ID] = r // reserves the id
	m.mu.busy[d.ID] = true // until launched: TERMINATE, PAUSE wait for a running query
	m.mu.Unlock()
	defer m.release(d.ID)
	undo := func(err error) (query.QueryInfo, error) {
		m.mu.Lock()
		delete(m.mu.queries, d.ID)
		m.mu.Unlock()
		return query.QueryInfo{}, err
	}
	// Reserved, the query keeps a DROP STREAM of its source from
	// starting; one that ended since checkCreate took the source away.
	if _, err := m.opts.Reader.DescribeStream(c.Source); err != nil {
		return undo(sqlError(c.SourceAt, "stream %s: %v", c.Source, err))
	}
	if c.Kind == query.KindInsert {
		if err := m.checkLate(c); err != nil {
			return undo(err)
		}
	}
	v, err := encodeDefinition(d)
	if err != nil {
		return undo(err)
	}
	// The definition first: a crash before the stream exists leaves a
	// query that creates it when restored, never a stream without query.
	// With it, where its publication starts: at its first output record.
	// Progress an earlier query of the id left (a hint written after
	// its TERMINATE, by a runner of an earlier term) would make this one
	// skip input: cleared in the same write.
	writes := append(forgetProgress(d.ID), streams.KVWrite{Key: defKey(d.ID), Value: v})
	if c.Publish {
		writes = append(writes, streams.KVWrite{Key: pubKey(d.ID), Value: encodeHint(0)})
	}
	if c.Kind == query.KindInsert {
		writes = append(writes, streams.KVWrite{Key: []byte(seqKey), Value: encodeHint(int64(seq))})
	}
	if err := p.kv.Write(ctx, writes...); err != nil {
		return undo(fmt.Errorf("cq: keep query %s: %w", d.ID, err))
	}
	if c.Kind == query.KindStream {
		if _, err := p.w.CreateStream(ctx, c.Name, streams.Retention{}); err != nil {
			_ = p.kv.Write(context.Background(), streams.KVWrite{Key: defKey(d.ID), Delete: true}, streams.KVWrite{Key: pubKey(d.ID), Delete: true})
			if errors.Is(err, streams.ErrStreamExists) {
				return undo(sqlError(c.NameAt, "stream %s already exists: a continuous query creates its output stream", c.Name))
			}
			return undo(fmt.Errorf("cq: create stream %s: %w", c.Name, err))
		}
	}
	m.mu.Lock()
	m.launch(r) // under the lock: Close waits for what was launched before it
	m.mu.Unlock()
	m.log.Info("continuous query created", "query", d.ID, "kind", c.Kind, "source", c.Source, "window", c.Window.Size)
	return r.info(), nil
}

// resolve tells a query's compiler what the names of a join are: the
// views this manager runs (Start restores them first) and the streams
// the store has (query.ViewPlans).
func (m *Manager) resolve(name string) (*query.Continuous, bool) {
	if v, ok := m.View(name); ok {
		return v.Plan(), false
	}
	_, err := m.opts.Reader.DescribeStream(name)
	return nil, err == nil
}

// sqlError is an error of the statement, at p.
func sqlError(p query.Pos, format string, args ...any) error {
	return &query.Error{Code: query.CodeSQL, Message: fmt.Sprintf(format, args...), Line: p.Line, Column: p.Column}
}

// checkCreate checks the streams a new query names. For INSERT INTO it
// returns the output stream's next offset: the query's output comes
// after it.
func (m *Manager) checkCreate(ctx context.Context, c *query.Continuous) (from uint64, err error) {
	if _, err := m.describeInput(ctx, c.Source); errors.Is(err, streams.ErrStreamNotFound) {
		return 0, sqlError(c.SourceAt, "unknown stream %q: a continuous query reads an existing stream (SHOW STREAMS lists them)", c.Source)
	} else if err != nil {
		return 0, err
	}
	if c.Publish && m.opts.Publisher == nil {
		return 0, sqlError(query.Pos{}, "this node cannot publish on MQTT: leave out WITH (topic = ...)")
	}
	if c.Source == c.Name && c.Kind != query.KindView {
		return 0, sqlError(c.SourceAt, "a query cannot read the stream it writes")
	}
	if j := c.Join; j != nil && j.Kind == query.JoinInterval {
		if _, err := m.describeInput(ctx, j.Right); errors.Is(err, streams.ErrStreamNotFound) {
			return 0, sqlError(j.RightAt, "unknown stream or view %q: a join reads an existing stream (SHOW STREAMS lists them) or view (SHOW VIEWS)", j.Right)
		} else if err != nil {
			return 0, err
		}
		if j.Right == c.Name {
			return 0, sqlError(j.RightAt, "a query cannot read the stream it writes")
		}
	}
	sink, err := m.opts.Reader.DescribeStream(c.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, streams.ErrStreamNotFound) {
		return 0, err
	}
	switch c.Kind {
	case query.KindInsert:
		if !exists {
			return 0, sqlError(c.NameAt, "unknown stream %q: INSERT INTO writes an existing stream (CREATE STREAM %s AS SELECT ... creates one)", c.Name, c.Name)
		}
		from = sink.NextOffset
	case query.KindView:
		if exists {
			return 0, sqlError(c.NameAt, "%s is a stream: a view needs a name of its own", c.Name)
		}
		return 0, nil
	default:
		if exists {
			return 0, sqlError(c.NameAt, "stream %s already exists: a continuous query creates its output stream (choose another name, delete the stream, or write into it with INSERT INTO %s SELECT ...)", c.Name, c.Name)
		}
	}
	if c.Kind != query.KindInsert { // its late stream is named once its id is known
		if err := m.checkLate(c); err != nil {
			return 0, err
		}
	}
	return from, nil
}

// inputWait is how long, in a cluster, a query being created waits for
// an input stream this node does not see yet: one created a moment ago
// through another node reaches this node's replica within a second or
// two (a follower applies the leader's entries a moment later).
const inputWait = 2 * time.Second

// describeInput describes input stream name; in a cluster it waits up to
// inputWait for a stream not found.
func (m *Manager) describeInput(ctx context.Context, name string) (streams.StreamInfo, error) {
	info, err := m.opts.Reader.DescribeStream(name)
	if m.opts.Homes == nil {
		return info, err
	}
	deadline := time.Now().Add(inputWait)
	for errors.Is(err, streams.ErrStreamNotFound) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return info, err
		case <-time.After(50 * time.Millisecond):
		}
		info, err = m.opts.Reader.DescribeStream(name)
	}
	return info, err
}

// checkLate refuses a query whose late stream (late = TRUE) exists.
func (m *Manager) checkLate(c *query.Continuous) error {
	if c.LateStream == "" {
		return nil
	}
	if err := streams.ValidateName(c.LateStream); err != nil {
		return sqlError(c.NameAt, "late = TRUE writes the stream %q, not a valid name: %v", c.LateStream, err)
	}
	if _, err := m.opts.Reader.DescribeStream(c.LateStream); err == nil {
		return sqlError(c.NameAt, "stream %s already exists: late = TRUE creates it for the query's late records (DROP STREAM %s, or choose another name)", c.LateStream, c.LateStream)
	} else if !errors.Is(err, streams.ErrStreamNotFound) {
		return err
	}
	return nil
}

// List returns every query, sorted by id.
func (m *Manager) List() []query.QueryInfo {
	m.mu.Lock()
	rs := make([]*runner, 0, len(m.mu.queries))
	for _, r := range m.mu.queries {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	out := make([]query.QueryInfo, 0, len(rs))
	for _, r := range rs {
		if m.elsewhere(r) == nil { // a view's replica: its leader lists it
			out = append(out, r.info())
		}
	}
	slices.SortFunc(out, func(a, b query.QueryInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ErrNotFound: no query has the id.
var ErrNotFound = query.ErrQueryNotFound

// Terminate stops query id and forgets it; its output stream stays.
func (m *Manager) Terminate(ctx context.Context, id string) error {
	r, err := m.claim(id)
	if err != nil {
		return err
	}
	defer m.release(id)
	p, err := m.adminPlace(r)
	if err != nil {
		return err
	}
	r.terminate()
	writes := append(forgetProgress(id), streams.KVWrite{Key: defKey(id), Delete: true})
	if n, ok := insertSeqOf(id); ok {
		// The kept number never falls below a terminated INSERT INTO's
		// (two creations racing may have kept the lower): its output
		// records stay in the stream, and a new query of that id would
		// take them for its progress.
		if kept, err := nextInsertSeq(p.kv); err == nil && kept < n {
			writes = append(writes, streams.KVWrite{Key: []byte(seqKey), Value: encodeHint(int64(n))})
		}
	}
	err = p.kv.Write(ctx, writes...)
	if err != nil {
		// The definition stays: the query runs on, as before the
		// request, rather than stay listed while stopped.
		m.restartAs(id, r, r.def)
		return fmt.Errorf("cq: forget query %s: %w", id, err)
	}
	m.mu.Lock()
	delete(m.mu.queries, id)
	m.mu.Unlock()
	m.log.Info("continuous query terminated", "query", id)
	return nil
}

// Close stops every query (they resume from their progress at the next
// Start). It is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.mu.closed = true
	m.mu.Unlock()
	m.stop()
	m.wg.Wait()
	return nil
}
