package query

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A push query's answer to POST /v1/query streams: newline-delimited JSON
// (application/x-ndjson) by default, or Server-Sent Events when the
// request accepts text/event-stream. Both carry the same messages:
//
//	{"columns":[{"name":"sensor","type":"any"},...]}   first (SSE event "columns")
//	["s1",3]                                          one per row (event "row")
//	{"error":{"code":...,"message":...}}              if the query fails (event "error")
//	{"end":{"rows":42}}                               when it ends: LIMIT reached, node closing (event "end")
//
// The stream ends when the client goes away.

// sseKeepalive is how often an idle event stream sends a comment.
const sseKeepalive = 15 * time.Second

// pushWriter writes a push query's messages in one of the two framings.
// mu guards the response: the keepalive writes from another goroutine.
type pushWriter struct {
	mu  sync.Mutex
	w   io.Writer
	rc  *http.ResponseController
	sse bool
	err error // the first write error: the client went away
}

func (p *pushWriter) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding a row: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	if p.sse {
		_, p.err = fmt.Fprintf(p.w, "event: %s\ndata: %s\n\n", event, b)
	} else {
		_, p.err = p.w.Write(append(b, '\n'))
	}
	if p.err == nil {
		p.err = p.rc.Flush()
	}
	return p.err
}

func (p *pushWriter) keepalive() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		if _, p.err = io.WriteString(p.w, ": keepalive\n\n"); p.err == nil {
			p.err = p.rc.Flush()
		}
	}
}

// streamPush runs a push query for the request and streams its rows.
func (e *Engine) streamPush(w http.ResponseWriter, r *http.Request, res *Result) {
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	p := &pushWriter{w: w, rc: http.NewResponseController(w), sse: sse}
	if p.send("columns", map[string]any{"columns": res.Columns}) != nil {
		return
	}
	if sse {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(sseKeepalive)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					p.keepalive()
				}
			}
		}()
	}
	var rows int64
	err := res.Push(r.Context(), func(row []any) error {
		rows++
		return p.send("row", row)
	})
	switch {
	case p.err != nil || r.Context().Err() != nil:
		return // the client went away
	case err != nil:
		qe := asError(err)
		if qe.Code == CodeInternal {
			e.log.Error("push query failed", "error", err)
		}
		_ = p.send("error", ErrorBody{Error: ErrorDetail{Code: qe.Code, Message: qe.Message, Line: qe.Line, Column: qe.Column}})
	default:
		_ = p.send("end", map[string]any{"end": map[string]int64{"rows": rows}})
	}
}
