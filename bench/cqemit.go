package bench

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// How soon a live cq run's windows come out. A windowed query's output
// rows carry window_end; the output record's timestamp is when the query
// wrote it. On append time (the default) a window can close once the
// input holds a record at or past its end, so for the windows that ended
// before the last input record, the row's timestamp minus window_end is
// how long after the window's end its row was out: the query's lag plus
// its emit delay (the issue's "final rows out within 100 ms p99 of the
// watermark"). The windows still open when the input stopped close on the
// query's idle timeout: for those the delay is IDLE_TIMEOUT plus how late
// the idle close was.

// maxEmitRows bounds the output rows a run reads back.
const maxEmitRows = 2_000_000

// EmitFigures summarise how soon windows came out.
type EmitFigures struct {
	// Rows of windows that ended before the last input record, and the
	// delay of their output after window_end.
	Rows  int     `json:"rows"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// IdleRows of windows that ended after the last input record, closed
	// while the input was idle; IdleMaxS the latest came out this long
	// after its window_end (IDLE_TIMEOUT plus the close's delay).
	IdleRows int     `json:"idle_rows"`
	IdleMaxS float64 `json:"idle_max_s"`
	// Truncated says only the first maxEmitRows rows were read.
	Truncated bool `json:"truncated,omitempty"`
}

// emitDelays reads the output stream back and measures its rows' delays
// after their window's end, lastInput being the last input record's
// timestamp. Rows without window_end (a query without windows) give no
// figures.
func emitDelays(ctx context.Context, api *apiClient, output string, lastInput time.Time) (*EmitFigures, error) {
	var delays []time.Duration
	f := &EmitFigures{}
	for from := uint64(0); ; {
		var page struct {
			Records []struct {
				Timestamp time.Time `json:"timestamp"`
				Payload   struct {
					WindowEnd *time.Time `json:"window_end"`
				} `json:"payload"`
			} `json:"records"`
			NextOffset uint64 `json:"next_offset"`
		}
		path := "/v1/streams/" + url.PathEscape(output) + "/records?from_offset=" + strconv.FormatUint(from, 10) + "&limit=10000"
		if err := api.do(ctx, "GET", path, "", &page); err != nil {
			return nil, fmt.Errorf("bench cq: read the output: %w", err)
		}
		for _, r := range page.Records {
			end := r.Payload.WindowEnd
			if end == nil {
				continue
			}
			d := r.Timestamp.Sub(*end)
			if end.After(lastInput) {
				f.IdleRows++
				f.IdleMaxS = max(f.IdleMaxS, d.Seconds())
				continue
			}
			delays = append(delays, d)
		}
		if len(page.Records) == 0 || page.NextOffset <= from {
			break
		}
		from = page.NextOffset
		if from >= maxEmitRows {
			f.Truncated = true
			break
		}
	}
	if len(delays) == 0 && f.IdleRows == 0 {
		return nil, nil
	}
	slices.Sort(delays)
	f.Rows = len(delays)
	if f.Rows > 0 {
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		f.P50Ms, f.P99Ms, f.MaxMs = ms(delays[f.Rows/2]), ms(delays[min(f.Rows-1, f.Rows*99/100)]), ms(delays[f.Rows-1])
	}
	return f, nil
}

// lastTimestamp is the timestamp of stream's last record (n records).
func lastTimestamp(ctx context.Context, api *apiClient, stream string, n int64) (time.Time, error) {
	var page struct {
		Records []struct {
			Timestamp time.Time `json:"timestamp"`
		} `json:"records"`
	}
	path := "/v1/streams/" + url.PathEscape(stream) + "/records?from_offset=" + strconv.FormatInt(n-1, 10) + "&limit=1"
	if err := api.do(ctx, "GET", path, "", &page); err != nil {
		return time.Time{}, fmt.Errorf("bench cq: read the input's last record: %w", err)
	}
	if len(page.Records) == 0 {
		return time.Time{}, fmt.Errorf("bench cq: stream %s has no record %d", stream, n-1)
	}
	return page.Records[0].Timestamp, nil
}

// waitWindowsClosed waits, at most wait, until the query has no open
// window (they close on its idle timeout once the input stops).
func waitWindowsClosed(ctx context.Context, api *apiClient, id string, wait time.Duration) error {
	limit := time.Now().Add(wait)
	for {
		var q struct {
			OpenWindows int64 `json:"open_windows"`
		}
		if err := api.do(ctx, "GET", "/v1/queries/"+url.PathEscape(id), "", &q); err != nil {
			return fmt.Errorf("bench cq: query %s: %w", id, err)
		}
		if q.OpenWindows == 0 || time.Now().After(limit) || ctx.Err() != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pacer spaces one publisher's publishes rate per second apart (no
// pacing when rate is 0).
type pacer struct {
	start    time.Time
	interval time.Duration
	n        int64
}

func newPacer(rate float64) *pacer {
	p := &pacer{start: time.Now()}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) / rate)
	}
	return p
}

// wait returns when the next publish is due.
func (p *pacer) wait(ctx context.Context) {
	if p.interval == 0 {
		return
	}
	due := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	// Publishes due within a millisecond go at once: a timer per
	// publish would cost more than the publish at tens of thousands a
	// second.
	if d := time.Until(due); d > time.Millisecond {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}
