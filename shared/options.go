package shared

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Strategy picks the member that gets a record.
type Strategy string

const (
	// RoundRobin hands records to connected members in turn, skipping
	// members whose window is full.
	RoundRobin Strategy = "round-robin"
	// LeastInflight hands each record to the member with the fewest
	// unacknowledged records.
	LeastInflight Strategy = "least-inflight"
	// HashTopic sends all records of one topic to the same member (per-topic
	// order while membership is stable).
	HashTopic Strategy = "hash-topic"
	// HashClient sends all records of one publisher to the same member.
	HashClient Strategy = "hash-client"
)

// ParseStrategy validates a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case RoundRobin, LeastInflight, HashTopic, HashClient:
		return st, nil
	case "":
		return RoundRobin, nil
	}
	return "", fmt.Errorf("unknown strategy %q (want round-robin, least-inflight, hash-topic or hash-client)", s)
}

// StartKind says where a new group starts reading.
type StartKind int

const (
	// StartLatest: records appended after the group was created.
	StartLatest StartKind = iota
	// StartEarliest: the oldest record kept.
	StartEarliest
	// StartOffset: a given offset in each source stream.
	StartOffset
	// StartTime: the first record at or after a given time.
	StartTime
)

// Position is a place in the source streams: where a group starts, or where
// a seek moves it.
type Position struct {
	Kind   StartKind
	Offset uint64    // StartOffset
	Time   time.Time // StartTime
}

// ParsePosition parses "earliest", "latest", "offset:N" or "time:RFC3339".
func ParsePosition(s string) (Position, error) {
	switch {
	case s == "latest" || s == "":
		return Position{Kind: StartLatest}, nil
	case s == "earliest":
		return Position{Kind: StartEarliest}, nil
	case strings.HasPrefix(s, "offset:"):
		n, err := strconv.ParseUint(strings.TrimPrefix(s, "offset:"), 10, 64)
		if err != nil {
			return Position{}, fmt.Errorf("position %q: offset is not a number", s)
		}
		return Position{Kind: StartOffset, Offset: n}, nil
	case strings.HasPrefix(s, "time:"):
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(s, "time:"))
		if err != nil {
			return Position{}, fmt.Errorf("position %q: time is not RFC 3339 (e.g. 2026-01-02T15:04:05Z)", s)
		}
		return Position{Kind: StartTime, Time: t}, nil
	}
	return Position{}, fmt.Errorf("position %q: want earliest, latest, offset:N or time:RFC3339", s)
}

// String returns the configuration form of the position.
func (p Position) String() string {
	switch p.Kind {
	case StartEarliest:
		return "earliest"
	case StartOffset:
		return "offset:" + strconv.FormatUint(p.Offset, 10)
	case StartTime:
		return "time:" + p.Time.UTC().Format(time.RFC3339Nano)
	}
	return "latest"
}

// GroupOptions configure one consumer group.
type GroupOptions struct {
	Strategy Strategy
	// AckTimeout is how long a member may hold a record before it is
	// redelivered (to another member when one has room).
	AckTimeout time.Duration
	// MaxDeliveries sends a record to the dead-letter stream once it was
	// delivered this many times without an ack; 0 = unlimited.
	MaxDeliveries int
	// DeadLetter is the dead-letter stream; "{group}" is replaced by the
	// group name. It must start with '$'.
	DeadLetter string
	// Window is the number of unacknowledged records an MQTT 3.1.1 member
	// may hold (MQTT 5 members announce theirs as Receive Maximum).
	Window int
	// MaxWindow caps any member's window.
	MaxWindow int
	// ReadAhead is how many records the group reads before members have room for them.
	ReadAhead int
	// MaxUnackedSpan stops reading when this many offsets separate the
	// oldest record not yet acknowledged from the next one to read: it
	// bounds the memory the acknowledgement bookkeeping can take.
	MaxUnackedSpan int
}

// DefaultGroupOptions returns the defaults, each with its reason.
func DefaultGroupOptions() GroupOptions {
	return GroupOptions{
		Strategy:       RoundRobin,
		AckTimeout:     30 * time.Second, // long enough for real work, short enough to notice a stuck worker
		MaxDeliveries:  16,               // a poison record stops blocking progress after 16 tries
		DeadLetter:     "$dlq.{group}",
		Window:         256,     // enough to keep a fast worker busy over loopback and LAN latencies
		MaxWindow:      1024,    // bounds memory per member whatever Receive Maximum says
		ReadAhead:      1024,    // a few batches of work ready without holding a backlog in memory
		MaxUnackedSpan: 100_000, // bounds the out-of-order ack map to a few MB
	}
}

// Validate reports every problem at once.
func (o GroupOptions) Validate() error {
	var errs []error
	if _, err := ParseStrategy(string(o.Strategy)); err != nil {
		errs = append(errs, err)
	}
	if o.AckTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("ack_timeout %s is below 10ms", o.AckTimeout))
	}
	if o.MaxDeliveries < 0 {
		errs = append(errs, errors.New("max_deliveries must not be negative"))
	}
	if !strings.HasPrefix(o.DeadLetter, "$") {
		errs = append(errs, fmt.Errorf("dead_letter %q must start with '$'", o.DeadLetter))
	}
	if o.Window < 1 || o.Window > 65535 {
		errs = append(errs, fmt.Errorf("window %d is outside 1..65535", o.Window))
	}
	if o.MaxWindow < o.Window || o.MaxWindow > 65535 {
		errs = append(errs, fmt.Errorf("max_window %d is outside window..65535", o.MaxWindow))
	}
	if o.ReadAhead < 1 {
		errs = append(errs, errors.New("read_ahead must be at least 1"))
	}
	if o.MaxUnackedSpan < o.ReadAhead {
		errs = append(errs, errors.New("max_unacked_span must be at least read_ahead"))
	}
	return errors.Join(errs...)
}

// Declaration declares a group ahead of any subscriber.
type Declaration struct {
	Name    string
	Filter  string
	Start   Position
	Options GroupOptions
}

// Options configure the Manager.
type Options struct {
	// Store is where groups read records and append dead letters.
	Store Store
	// Progress keeps group definitions and progress (a KV namespace of
	// the store, so that its writes share the group commit).
	Progress ProgressStore
	Mapper   Mapper
	// Defaults apply to groups created by a first SUBSCRIBE.
	Defaults GroupOptions
	// Declared groups are created at start (if missing) and keep their options.
	Declared []Declaration
	// FlushInterval is how often changed progress is persisted.
	FlushInterval time.Duration
	Logger        *slog.Logger
	// Now returns the current time (tests); nil means time.Now.
	Now func() time.Time
	// OnPersist, if set, is called after a group's progress is durable
	// (on the group goroutine; it must not block) with the number of acks
	// the durable progress includes. Crash tests use it.
	OnPersist func(name, filter string, acked int64)
	// Owner, if set, says whether this node runs the group
	// $share/<name>/<filter> now, and the epoch of that ownership (in
	// cluster mode: whether this node leads the group's shard, and the
	// leadership's Raft term). Nil means every group runs here
	// (standalone). Groups not owned are neither loaded nor joined
	// (ErrNotOwner); Refresh applies changes of ownership.
	Owner func(name, filter string) (epoch uint64, ok bool)
}
