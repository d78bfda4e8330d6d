package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mqstream/mqstream/streams"
)

func acceptsSSE(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// sseKeepalive is how often an idle event stream sends a comment, so
// proxies and clients see the connection alive.
const sseKeepalive = 15 * time.Second

// followRetry is how long a follow waits before it asks again after a
// read failed for a reason other than the stream's deletion (in cluster
// mode: no node holding the stream's shard answered).
const followRetry = time.Second

// follow streams records from offset on as Server-Sent Events (event
// "record", id = offset) until the client goes away or the stream is
// deleted (event "end"). A read that fails as unavailable (the stream's
// holders unreachable for a while) is tried again every followRetry,
// the connection kept alive meanwhile: ending it would look to the
// client like a follow that ended normally.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, name string, from uint64) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return fmt.Errorf("%w: streaming is not supported by this connection", errBadRequest)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	ctx := r.Context()
	keepalive := time.NewTicker(sseKeepalive)
	defer keepalive.Stop()
	next := from
	// pause waits followRetry (keeping the connection alive); false once
	// the client went away.
	pause := func() bool {
		retry := time.NewTimer(followRetry)
		defer retry.Stop()
		for {
			select {
			case <-ctx.Done():
				return false
			case <-retry.C:
				return true
			case <-keepalive.C:
				if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
					return false
				}
				fl.Flush()
			}
		}
	}
	logged := false
	failed := func(err error) bool {
		if !errors.Is(err, streams.ErrUnavailable) {
			return false // the store closed (the node stops), or a fault no wait mends
		}
		if !logged {
			logged = true
			s.log.Warn("following a stream: a read failed; trying again", "stream", name, "error", err)
		}
		return pause()
	}
	for {
		ch, committed, err := s.opts.Store.Notify(name)
		if err != nil {
			if errors.Is(err, streams.ErrStreamNotFound) {
				fmt.Fprintf(w, "event: end\ndata: {\"reason\":\"stream deleted\"}\n\n")
				fl.Flush()
				return nil
			}
			if !failed(err) {
				return nil
			}
			continue
		}
		readFailed := false
		for committed > next {
			recs, err := s.opts.Store.Read(name, next, streams.ReadOptions{MaxRecords: 500})
			if err != nil {
				// A deletion is found by the next Notify.
				if readFailed = true; !failed(err) {
					return nil
				}
				break
			}
			if len(recs) == 0 {
				break
			}
			for _, rec := range recs {
				b, _ := json.Marshal(toRecordJSON(rec))
				if _, err := fmt.Fprintf(w, "id: %d\nevent: record\ndata: %s\n\n", rec.Offset, b); err != nil {
					return nil // the client went away
				}
				next = rec.Offset + 1
			}
			fl.Flush()
		}
		if readFailed {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			fl.Flush()
		}
	}
}
