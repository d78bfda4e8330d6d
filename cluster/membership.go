package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Tag keys every member carries.
const (
	tagCluster = "cluster"
	tagRPC     = "rpc"
	tagMQTT    = "mqtt"
	tagHTTP    = "http"
	tagVersion = "version"
	tagSetting = "s:" // prefix of a cluster-wide setting's fingerprint
	tagFormed  = "formed"
	tagVouched = "vouched"
	tagFeature = "f:" // prefix of a feature the member announces (Options.Features)
	tagParts   = "d:" // prefix of a setting's parts' fingerprints (Options.SettingParts)
)

// maxTagBytes is memberlist's limit on a member's metadata, which Serf
// fills with the tags it encodes.
const maxTagBytes = memberlist.MetaMaxSize

// ErrRefused: the cluster refused this node (another cluster's name, or its
// node id taken by another node).
var ErrRefused = errors.New("refused by the cluster")

// Member is one node of the cluster as this node sees it.
type Member struct {
	ID string `json:"id"`
	// Status is alive, suspect (missed probes, not yet failed), failed or left.
	Status  string `json:"status"`
	Gossip  string `json:"gossip"`
	RPC     string `json:"rpc"`
	MQTT    string `json:"mqtt"`
	HTTP    string `json:"http"`
	Version string `json:"version"`
	// Features are what the member announces it understands
	// (Options.Features).
	Features []string `json:"-"`
	// Founders are the ids of the members that formed the cluster, as
	// this member announced them once it laid out the shards (MarkFormed;
	// none before).
	Founders []string `json:"-"`
	// Vouched: the member's data directory is registered with the
	// metadata group (MarkVouched), so the cluster has run with it.
	Vouched bool `json:"-"`
}

// Up reports whether gossip calls the member alive: its status is alive
// or suspect. Placement, formation and joining go by Up, so that a member
// missing a few pings (suspect) is not treated as gone before gossip's
// failure detection says so (failed).
func (m Member) Up() bool { return m.Status == "alive" || m.Status == "suspect" }

// Membership is this node's view of the cluster: who is there, alive or
// not, and a feed of changes.
type Membership struct {
	opts   Options
	log    *slog.Logger
	serf   *serf.Serf
	events chan serf.Event
	done   chan struct{}
	wg     sync.WaitGroup
	// refusals are the merges the merge check refused since the current
	// join attempt began (join resets them).
	refusals struct {
		sync.Mutex // guards list
		list       []refusal
	}
	self atomic.Pointer[string] // the bound gossip address, once known
	// joinedCh is closed once the node has joined (setJoined): a seed
	// answered, it has none, or another member joined it.
	joinedCh chan struct{}
	// suspicion makes members that miss this node's pings suspect.
	suspicion suspicion

	mu struct {
		sync.Mutex
		changed     chan struct{} // closed (and replaced) on every change
		unreachable map[string]bool
		joined      bool // met a seed, has none, or was joined by a member
		formed      bool // BootstrapExpect members were alive once
		fatal       bool // OnFatal was called
		closed      bool
	}
}

// Start creates the node's gossip member and joins the cluster through its
// seeds. A seed that refuses the node (another cluster, a duplicate id)
// fails Start with ErrRefused; unreachable seeds are retried in the
// background until one answers.
func Start(opts Options) (*Membership, error) {
	if opts.NodeID == "" || opts.Cluster == "" {
		return nil, errors.New("cluster: NodeID and Cluster are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timers == (Timers{}) {
		opts.Timers = DefaultTimers()
	}
	if opts.BootstrapExpect < 1 {
		opts.BootstrapExpect = 1
	}
	m := &Membership{opts: opts, log: opts.Logger.With("component", "cluster"), done: make(chan struct{}),
		events: make(chan serf.Event, 64), joinedCh: make(chan struct{})}
	m.mu.changed = make(chan struct{})
	m.mu.unreachable = map[string]bool{}
	m.mu.formed = opts.Formed
	m.suspicion.need = missesFor(opts.Timers.Probe)
	conf, err := m.serfConfig()
	if err != nil {
		return nil, err
	}
	if m.serf, err = serf.Create(conf); err != nil {
		return nil, fmt.Errorf("cluster: gossip on %s: %w", opts.Gossip, err)
	}
	addr := m.GossipAddr()
	m.self.Store(&addr)
	m.wg.Add(2)
	go m.watchEvents()
	go m.probeMembers()
	seeds := m.otherSeeds()
	if len(seeds) == 0 {
		m.setJoined()
	} else if err := m.join(seeds); err != nil {
		if errors.Is(err, ErrRefused) {
			m.shutdown()
			return nil, err
		}
		m.wg.Add(1)
		go m.retryJoin(seeds)
	}
	m.log.Info("cluster member started", "node", opts.NodeID, "cluster", opts.Cluster, "gossip", m.GossipAddr(),
		"seeds", strings.Join(opts.Seeds, ","))
	return m, nil
}

func (m *Membership) serfConfig() (*serf.Config, error) {
	o, t := m.opts, m.opts.Timers
	host, port, err := splitAddr("cluster.gossip", o.Gossip)
	if err != nil {
		return nil, err
	}
	ml := memberlist.DefaultLANConfig()
	ml.BindAddr, ml.BindPort = host, port
	if o.Advertise != "" {
		ml.AdvertiseAddr, ml.AdvertisePort = o.Advertise, port
	}
	ml.ProbeInterval, ml.ProbeTimeout, ml.SuspicionMult = t.Probe, t.ProbeTimeout, t.SuspicionMult
	ml.GossipInterval, ml.PushPullInterval = t.Gossip, t.PushPull
	ml.TCPTimeout = max(10*t.ProbeTimeout, time.Second)
	logger := log.New(&logWriter{log: m.log}, "", 0)
	ml.Logger = logger

	conf := serf.DefaultConfig()
	conf.Init()
	conf.NodeName = o.NodeID
	conf.MemberlistConfig = ml
	conf.Logger = logger
	conf.EventCh = m.events
	conf.CoalescePeriod, conf.QuiescentPeriod = t.Coalesce, t.Quiescent
	conf.ReapInterval = t.Reap
	// How often serf tries to reach a failed member again (with a
	// probability of failed / alive members each time): the way a member
	// seen failed through a partition is seen alive again when gossip
	// from it does not arrive. A third of the reap interval (5 s with
	// the default timers), not serf's 30 s: after a heal a node saw the
	// member on the other side failed for over 30 s.
	conf.ReconnectInterval = max(t.Reap/3, time.Second)
	conf.LeavePropagateDelay = 2 * t.Gossip
	conf.Merge = &mergeCheck{m: m}
	conf.Tags = map[string]string{tagCluster: o.Cluster, tagRPC: o.RPC, tagMQTT: o.MQTT, tagHTTP: o.HTTP, tagVersion: o.Version}
	for k, v := range o.Settings {
		conf.Tags[tagSetting+k] = v
	}
	for _, f := range o.Features {
		conf.Tags[tagFeature+f] = "1"
	}
	for k, parts := range o.SettingParts {
		prints := make([]string, len(parts))
		for i, p := range parts {
			prints[i] = p.Print
		}
		conf.Tags[tagParts+k] = strings.Join(prints, ".")
	}
	if o.Vouched {
		conf.Tags[tagVouched] = "1"
	}
	m.fitTags(conf.Tags)
	return conf, nil
}

// fitTags leaves the settings' parts out of tags when the tags would
// exceed memberlist's limit with them (long addresses, many founders):
// those only make a refusal's message more precise.
func (m *Membership) fitTags(tags map[string]string) {
	size := 5 // Serf's magic byte and the map's header, at most
	for k, v := range tags {
		size += len(k) + len(v) + 6 // each string's msgpack header: at most 3 bytes
	}
	if size <= maxTagBytes {
		return
	}
	for k := range tags {
		if strings.HasPrefix(k, tagParts) {
			delete(tags, k)
			m.log.Info("gossip tags near their limit: a refusal for differing settings will name the setting, not its keys",
				"setting", strings.TrimPrefix(k, tagParts))
		}
	}
}

// otherSeeds are the seeds that are not this node's own gossip address.
func (m *Membership) otherSeeds() []string {
	self := m.GossipAddr()
	var out []string
	for _, s := range m.opts.Seeds {
		if s != self && s != m.opts.Gossip {
			out = append(out, s)
		}
	}
	return out
}

// join tries every seed once, each on its own so that an unreachable
// seed is logged with its own error.
func (m *Membership) join(seeds []string) error {
	joined := false
	var errs []error
	for _, s := range seeds {
		m.refusals.Lock()
		m.refusals.list = nil
		m.refusals.Unlock()
		n, err := m.serf.Join([]string{s}, true)
		if err := m.refusedJoining(s); err != nil {
			return err
		}
		if n > 0 {
			joined = true
			continue
		}
		if err == nil {
			err = errors.New("no answer")
		}
		err = oneLine(err)
		errs = append(errs, fmt.Errorf("%s: %w", s, err))
		m.mu.Lock()
		if !m.mu.unreachable[s] {
			m.mu.unreachable[s] = true
			m.log.Warn("cluster seed unreachable; retrying", "seed", s, "error", err)
		}
		m.mu.Unlock()
	}
	if joined {
		m.setJoined()
		return nil
	}
	return errors.Join(errs...)
}

// oneLine turns Serf's multi-error ("1 error occurred:\n\t* failed to
// join ...") into one whose message is its errors' on one line, for the
// log; errors.Is still sees them.
func oneLine(err error) error {
	multi, ok := err.(interface{ WrappedErrors() []error })
	if !ok || len(multi.WrappedErrors()) == 0 {
		return err
	}
	return lineErrors(multi.WrappedErrors())
}

// lineErrors are errors whose message is theirs joined by "; ".
type lineErrors []error

func (e lineErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e lineErrors) Unwrap() []error { return e }

// retryJoin retries unreachable seeds with capped exponential backoff,
// until one answers or another member joins this one (joinedBy).
func (m *Membership) retryJoin(seeds []string) {
	defer m.wg.Done()
	wait := m.opts.Timers.JoinRetryMin
	for {
		select {
		case <-m.done:
			return
		case <-m.joinedCh:
			return
		case <-time.After(wait):
		}
		err := m.join(seeds)
		if err == nil {
			return
		}
		if errors.Is(err, ErrRefused) {
			m.fatalErr(err)
			return
		}
		wait = min(2*wait, m.opts.Timers.JoinRetryMax)
	}
}

// joinedBy latches "joined" when another member of this cluster is alive
// in this node's view: it joined this node through its own seeds (the
// merge check let it in), so waiting for this node's seeds to answer
// would only keep it unready.
func (m *Membership) joinedBy() {
	self := m.opts.NodeID
	for _, mem := range m.Members() {
		if mem.ID != self && mem.Up() {
			m.setJoined()
			return
		}
	}
}

func (m *Membership) setJoined() {
	m.mu.Lock()
	first := !m.mu.joined
	m.mu.joined = true
	m.mu.Unlock()
	if first {
		close(m.joinedCh)
		m.notify()
	}
}

func (m *Membership) fatalErr(err error) {
	m.mu.Lock()
	call := !m.mu.fatal && m.opts.OnFatal != nil
	m.mu.fatal = true
	m.mu.Unlock()
	m.log.Error("this node was refused by the cluster", "error", err)
	if call {
		m.opts.OnFatal(err)
	}
}

// watchEvents logs coalesced member events and fires the change feed.
func (m *Membership) watchEvents() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case ev := <-m.events:
			me, ok := ev.(serf.MemberEvent)
			if !ok {
				continue
			}
			level := slog.LevelInfo
			if me.Type == serf.EventMemberUpdate {
				level = slog.LevelDebug // tags changed: every member announces its formed cluster, its vouched data dir
			}
			for _, mem := range me.Members {
				m.log.Log(context.Background(), level, "cluster membership changed", "event", me.Type.String(), "member", mem.Name,
					"gossip", net.JoinHostPort(mem.Addr.String(), strconv.Itoa(int(mem.Port))))
			}
			m.joinedBy()
			m.Ready() // latches "formed" when enough members are alive
			m.notify()
		}
	}
}

// notify fires the change feed.
func (m *Membership) notify() {
	m.mu.Lock()
	close(m.mu.changed)
	m.mu.changed = make(chan struct{})
	m.mu.Unlock()
}

// Changed returns a channel closed at the next membership change.
func (m *Membership) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.changed
}

// GossipAddr is the address peers gossip with (the bound port when
// Options.Gossip asked for port 0).
func (m *Membership) GossipAddr() string {
	if m.serf == nil {
		return m.opts.Gossip
	}
	n := m.serf.Memberlist().LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Members lists the members this node knows of, by id, this node included.
func (m *Membership) Members() []Member {
	var out []Member
	for _, sm := range m.serf.Members() {
		if sm.Tags[tagCluster] != m.opts.Cluster {
			continue
		}
		st := "alive"
		switch sm.Status {
		case serf.StatusFailed:
			st = "failed"
		case serf.StatusLeft, serf.StatusLeaving:
			st = "left"
		default:
			if m.suspicion.suspect(sm.Name) {
				st = "suspect"
			}
		}
		out = append(out, Member{ID: sm.Name, Status: st,
			Gossip: net.JoinHostPort(sm.Addr.String(), strconv.Itoa(int(sm.Port))),
			RPC:    sm.Tags[tagRPC], MQTT: sm.Tags[tagMQTT], HTTP: sm.Tags[tagHTTP], Version: sm.Tags[tagVersion],
			Features: features(sm.Tags), Founders: founders(sm.Tags[tagFormed]),
			Vouched: sm.Tags[tagVouched] != ""})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Ready reports whether the cluster has formed from this node's view: it
// met a seed (or has none) and BootstrapExpect members were alive at once,
// or it was a member of the formed cluster before it started
// (Options.Formed); later failures do not undo that: losing members is for
// replication to handle, not a reason to stop serving. reason says what is
// missing.
func (m *Membership) Ready() (ready bool, reason string) {
	m.mu.Lock()
	joined, formed := m.mu.joined, m.mu.formed
	var unreachable []string
	for s := range m.mu.unreachable {
		unreachable = append(unreachable, s)
	}
	m.mu.Unlock()
	if !joined {
		sort.Strings(unreachable)
		return false, "joining the cluster: no seed reachable yet (" + strings.Join(unreachable, ", ") + ")"
	}
	alive := 0
	for _, mem := range m.Members() {
		if mem.Up() {
			alive++
		}
	}
	if formed {
		return true, ""
	}
	if alive < m.opts.BootstrapExpect {
		reason := fmt.Sprintf("waiting for the cluster to form: %d of %d expected nodes alive", alive, m.opts.BootstrapExpect)
		m.refusals.Lock()
		if n := len(m.refusals.list); n > 0 {
			// A founding node refused (another cluster, settings that
			// differ) is often why the count stays short.
			reason += "; the last node refused: " + m.refusals.list[n-1].err.Error()
		}
		m.refusals.Unlock()
		return false, reason
	}
	m.mu.Lock()
	m.mu.formed = true
	m.mu.Unlock()
	return true, ""
}

// MarkFormed tells the other members that the cluster has formed with
// these founding members, so that founders still laying out the shards
// take the same ones and a node arriving later knows it came too late.
func (m *Membership) MarkFormed(founders []string) error {
	tags := maps.Clone(m.serf.LocalMember().Tags)
	tags[tagFormed] = strings.Join(founders, ",")
	m.fitTags(tags)
	if err := m.serf.SetTags(tags); err != nil {
		return fmt.Errorf("cluster: announce the formed cluster: %w", err)
	}
	return nil
}

// MarkVouched tells the other members that the metadata group has
// registered this node's data directory: from then on a node that starts
// with a new data directory asks the group about it before it takes any
// part (node.replication).
func (m *Membership) MarkVouched() error {
	tags := maps.Clone(m.serf.LocalMember().Tags)
	if tags[tagVouched] != "" {
		return nil
	}
	tags[tagVouched] = "1"
	m.fitTags(tags)
	if err := m.serf.SetTags(tags); err != nil {
		return fmt.Errorf("cluster: announce the registered data directory: %w", err)
	}
	return nil
}

func founders(tag string) []string {
	if tag == "" {
		return nil
	}
	return strings.Split(tag, ",")
}

// Forget drops a failed or departed member from the member list for good
// (`node remove`); an alive member is not affected.
func (m *Membership) Forget(id string) error {
	if err := m.serf.RemoveFailedNodePrune(id); err != nil {
		return fmt.Errorf("cluster: forget %s: %w", id, err)
	}
	m.notify()
	return nil
}

// Close leaves the cluster gracefully (peers see "left", not "failed") and
// stops gossip. Idempotent.
func (m *Membership) Close() error {
	if !m.markClosed() {
		return nil
	}
	err := m.serf.Leave()
	m.shutdown()
	if err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Abandon stops gossip without leaving: peers see the node fail, as if
// it had crashed. For a node the cluster refused after it joined (its id
// removed, its data directory not the one the cluster knows): leaving
// would show the node whose id it carries as left. Idempotent, and a no-op
// after Close.
func (m *Membership) Abandon() error {
	if m.markClosed() {
		m.shutdown()
	}
	return nil
}

// markClosed marks the membership closed; false if it already was.
func (m *Membership) markClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	first := !m.mu.closed
	m.mu.closed = true
	return first
}

// shutdown stops gossip without leaving (peers see the node fail).
func (m *Membership) shutdown() {
	_ = m.serf.Shutdown()
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	m.wg.Wait()
}

// mergeCheck is Serf's merge delegate: it refuses members of another
// cluster and a second node with this node's id.
type mergeCheck struct{ m *Membership }

// refusal is a merge the merge check refused: why, and the gossip
// addresses of the members it would have merged. A node joining through
// a seed merges the seed's members, the seed among them; a refusal that
// does not involve the seed is of a node that tried to join this one (a
// node of another cluster naming it as its seed), not this node's own.
type refusal struct {
	err   error
	addrs []string
}

// maxRefusals bounds the refusals kept between two join attempts.
const maxRefusals = 16

// refusedJoining returns the error of a refusal recorded since the join
// through seed began that involves seed: this node's own.
func (m *Membership) refusedJoining(seed string) error {
	m.refusals.Lock()
	list := slices.Clone(m.refusals.list)
	m.refusals.Unlock()
	for _, r := range list {
		if r.involves(seed) {
			return r.err
		}
	}
	return nil
}

// involves reports whether the refused merge held the member at seed (an
// address that cannot be resolved counts as involved).
func (r *refusal) involves(seed string) bool {
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		return true
	}
	ips := []string{host}
	if net.ParseIP(host) == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if ips, err = net.DefaultResolver.LookupHost(ctx, host); err != nil {
			return true
		}
	}
	for _, ip := range ips {
		if slices.Contains(r.addrs, net.JoinHostPort(ip, port)) {
			return true
		}
	}
	return false
}

func (c *mergeCheck) NotifyMerge(members []*serf.Member) error {
	o := c.m.opts
	self := ""
	if p := c.m.self.Load(); p != nil {
		self = *p
	}
	addrs := make([]string, len(members))
	for i, mem := range members {
		addrs[i] = net.JoinHostPort(mem.Addr.String(), strconv.Itoa(int(mem.Port)))
	}
	for i, mem := range members {
		addr := addrs[i]
		var err error
		switch {
		case mem.Tags[tagCluster] != o.Cluster:
			err = fmt.Errorf("%w: member %s (%s) belongs to cluster %q, this node %s to cluster %q",
				ErrRefused, mem.Name, addr, mem.Tags[tagCluster], o.NodeID, o.Cluster)
		case len(differingSettings(o.Settings, o.SettingParts, mem.Tags)) > 0:
			err = fmt.Errorf("%w: cluster-wide settings differ between this node %s and member %s (%s): %s "+
				"(every member needs the same values; `mqstream serve --print-config` with a node's configuration shows its own)",
				ErrRefused, o.NodeID, mem.Name, addr, strings.Join(differingSettings(o.Settings, o.SettingParts, mem.Tags), ", "))
		case mem.Name == o.NodeID && self != "" && addr != self:
			// (While the gossip member is being created, the only member
			// with this id is this node itself.)
			err = fmt.Errorf("%w: node id %q is already used by the node at %s (this node gossips on %s)",
				ErrRefused, o.NodeID, addr, self)
		}
		if err != nil {
			c.m.log.Warn("cluster merge refused", "error", err)
			c.m.refusals.Lock()
			if len(c.m.refusals.list) >= maxRefusals {
				c.m.refusals.list = slices.Delete(c.m.refusals.list, 0, 1) // nobody is joining: keep the last few
			}
			c.m.refusals.list = append(c.m.refusals.list, refusal{err: err, addrs: addrs})
			c.m.refusals.Unlock()
			return err
		}
	}
	return nil
}

// differingSettings lists, sorted, the settings whose fingerprints differ
// between ours and a member's tags (a key only one side has counts). A
// setting whose parts both sides announce, as many on each side, is
// listed as the keys whose parts differ (as itself when none does: two
// parts' short fingerprints can collide).
func differingSettings(ours map[string]string, parts map[string][]SettingPart, tags map[string]string) []string {
	var out []string
	for k, v := range ours {
		if tags[tagSetting+k] != v {
			out = append(out, differingParts(k, parts[k], tags[tagParts+k])...)
		}
	}
	for t := range tags {
		if k, ok := strings.CutPrefix(t, tagSetting); ok {
			if _, mine := ours[k]; !mine {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// differingParts lists the keys of setting k whose parts differ from
// theirs (the parts' prints joined by '.'), or k itself when they cannot
// be compared or none differs.
func differingParts(k string, ours []SettingPart, theirs string) []string {
	prints := strings.Split(theirs, ".")
	if len(ours) == 0 || len(prints) != len(ours) {
		return []string{k}
	}
	var out []string
	for i, p := range ours {
		if p.Print != prints[i] {
			out = append(out, p.Key)
		}
	}
	if len(out) == 0 {
		return []string{k}
	}
	return out
}

// logWriter turns memberlist's and Serf's "[LEVEL] text" log lines into
// slog records (debug and info lines at debug: they are chatty).
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	switch {
	case strings.Contains(line, "[ERR]") && !expectedError(line):
		level = slog.LevelError
	case strings.Contains(line, "[ERR]"):
		level = slog.LevelWarn
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelWarn
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)

// expectedError reports whether a memberlist error line is what a healthy
// node logs when another fails or is refused (logged as a warning): a
// probe's TCP fallback to a member that died, and a merge this node's
// merge check refused (logged by the check too, with the reason).
func expectedError(line string) bool {
	return strings.Contains(line, "Failed fallback TCP ping") || strings.Contains(line, "Failed push/pull merge")
}

// features are the features a member's tags announce, sorted.
func features(tags map[string]string) []string {
	var out []string
	for k := range tags {
		if f, ok := strings.CutPrefix(k, tagFeature); ok {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}
