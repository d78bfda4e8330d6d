package shards

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// RaftLogger returns an hclog logger for hashicorp/raft that passes its
// lines on to log with their fields as attributes. Raft's warnings are
// routine in a cluster (an election after a node left, a peer that is
// down) and become Info; its errors become Warn; below warnings nothing
// is passed on.
//
// A peer that is down makes every group's leader complain several times a
// second; limit passes on one line per message and group every limitEvery
// and says how many it held back (per group, so that a group that keeps
// failing shows beside the others'). Share one limit among the loggers
// of a node.
func RaftLogger(log *slog.Logger, name string, limit *LogLimit) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, JSONFormat: true, DisableTime: true,
		Output: raftLines{log: log, limit: limit}})
}

// limitEvery is how often one Raft message is passed on at most.
const limitEvery = 10 * time.Second

// LogLimit holds back repeated Raft log messages; safe for concurrent use.
type LogLimit struct {
	mu   sync.Mutex // guards seen
	seen map[string]*limitState
}

type limitState struct {
	last time.Time
	held int
}

// NewLogLimit returns an empty limit.
func NewLogLimit() *LogLimit { return &LogLimit{seen: map[string]*limitState{}} }

// Allow reports whether a line keyed key may be logged now (at most once
// every 10 s), and how many were held back since it last was.
func (l *LogLimit) Allow(key string) (bool, int) { return l.allow(key, time.Now()) }

// allow reports whether the line keyed msg (a group and its message) may
// be logged now, and how many were held back since it last was.
func (l *LogLimit) allow(msg string, now time.Time) (bool, int) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.seen[msg]
	if st == nil {
		st = &limitState{}
		l.seen[msg] = st
	}
	if now.Sub(st.last) < limitEvery {
		st.held++
		return false, 0
	}
	held := st.held
	st.last, st.held = now, 0
	return true, held
}

// raftLines decodes hclog's JSON lines.
type raftLines struct {
	log   *slog.Logger
	limit *LogLimit
}

func (w raftLines) Write(p []byte) (int, error) {
	var line map[string]any
	if err := json.Unmarshal(p, &line); err != nil {
		w.log.Info("raft", "message", string(p))
		return len(p), nil
	}
	level := slog.LevelInfo
	if lv, _ := line["@level"].(string); lv == "error" {
		level = slog.LevelWarn
	}
	msg, _ := line["@message"].(string)
	group, _ := line["@module"].(string)
	ok, held := w.limit.allow(group+"\x00"+msg, time.Now())
	if !ok {
		return len(p), nil
	}
	attrs := []slog.Attr{slog.String("component", "raft")}
	if held > 0 {
		attrs = append(attrs, slog.Int("repeats_held_back", held))
	}
	if group != "" {
		attrs = append(attrs, slog.String("group", group))
	}
	for k, v := range line {
		if len(k) > 0 && k[0] != '@' {
			attrs = append(attrs, slog.String(k, fmt.Sprint(v)))
		}
	}
	w.log.LogAttrs(context.Background(), level, "raft: "+msg, attrs...)
	return len(p), nil
}
