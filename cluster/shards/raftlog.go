package shards

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// RaftLogger returns an hclog logger for hashicorp/raft that passes its
// lines on to log with their fields as attributes. Raft's warnings are
// routine in a cluster (an election after a node left, a peer that is
// down) and become Info; its errors become Warn; below warnings nothing
// is passed on.
func RaftLogger(log *slog.Logger, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, JSONFormat: true, DisableTime: true,
		Output: raftLines{log: log}})
}

// raftLines decodes hclog's JSON lines.
type raftLines struct{ log *slog.Logger }

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
	attrs := []slog.Attr{slog.String("component", "raft")}
	if m, ok := line["@module"].(string); ok {
		attrs = append(attrs, slog.String("group", m))
	}
	for k, v := range line {
		if len(k) > 0 && k[0] != '@' {
			attrs = append(attrs, slog.String(k, fmt.Sprint(v)))
		}
	}
	w.log.LogAttrs(context.Background(), level, "raft: "+msg, attrs...)
	return len(p), nil
}
