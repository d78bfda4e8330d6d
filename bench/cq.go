package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
)

// The cq scenario measures a continuous query of an mqstream node: it
// creates the query over the REST API (POST /v1/query), publishes Count
// JSON records {"k": "k<i mod Keys>", "v": <i mod 1000>} over MQTT (QoS 1)
// into the query's input stream, and reads the query's counters (GET
// /v1/queries/{id}) to report how fast it processed them and its lag.
// In replay mode the records are stored first and the query is created
// afterwards, starting at the input's first record: the rate is then how
// fast it catches up with stored input. The streams and the query of a
// previous run are deleted first.

// CQOptions configure a cq run. It is bounded by Count and Duration (the
// publishing, then as long again for the query to catch up).
type CQOptions struct {
	Broker string // MQTT host:port
	API    string // the node's HTTP API: http://host:port
	Token  string // bearer token for the API (empty: none)
	Count  int
	Keys   int
	// Replay stores the records before creating the query.
	Replay     bool
	Publishers int
	Window     int     // QoS 1 publishes in flight per publisher
	Rate       float64 // total publishes per second (0: as fast as acknowledged)
	Duration   time.Duration
	// IdleWait (live runs) is how long to wait after the query read the
	// last record for its open windows to close on its idle timeout
	// (0: not waited for).
	IdleWait time.Duration
	// Input and Output name the streams; SQL is the query, with
	// {in} and {out} replaced by them (empty: count, avg, max per key
	// over 10 s tumbling windows).
	Input, Output, SQL string
	Progress           io.Writer
}

// DefaultCQSQL is the query of a cq run unless told otherwise.
const DefaultCQSQL = "CREATE STREAM {out} AS SELECT k, count(*) AS n, avg(v) AS mean, max(v) AS hi FROM {in} GROUP BY k, TUMBLING(INTERVAL 10 SECOND)"

// CQResult is the summary of a cq run.
type CQResult struct {
	Mode      string  `json:"mode"` // live or replay
	SQL       string  `json:"sql"`
	Keys      int     `json:"keys"`
	Published int64   `json:"published"`
	PubRate   float64 `json:"publish_rate"`
	// RecordsIn is the query's input records read, over Seconds: from
	// the first publish (live) or the query's creation (replay) until it
	// had read them all (or the run's end).
	RecordsIn int64   `json:"records_in"`
	Seconds   float64 `json:"process_s"`
	Rate      float64 `json:"process_rate"`
	RowsOut   int64   `json:"rows_out"`
	// LagAtEnd is the input not read when publishing ended (live);
	// Lag and LagSeconds at the run's end.
	LagAtEnd   int64   `json:"lag_at_publish_end"`
	Lag        int64   `json:"lag"`
	LagSeconds float64 `json:"lag_seconds"`
	StateBytes int64   `json:"state_bytes"`
	Status     string  `json:"status"`
	Error      string  `json:"error,omitempty"`
	// Emit says how soon windows came out (live runs of windowed
	// queries: cqemit.go).
	Emit *EmitFigures `json:"emit,omitempty"`
}

func (o *CQOptions) defaults() {
	if o.Input == "" {
		o.Input = "bench_cq_in"
	}
	if o.Output == "" {
		o.Output = "bench_cq_out"
	}
	if o.SQL == "" {
		o.SQL = DefaultCQSQL
	}
	if o.Publishers == 0 {
		o.Publishers = 4
	}
	if o.Window == 0 {
		o.Window = 256
	}
}

// Validate checks the options.
func (o *CQOptions) Validate() error {
	var errs []error
	if o.Broker == "" || o.API == "" {
		errs = append(errs, errors.New("broker and API addresses are required"))
	}
	if o.Count < 1 || o.Keys < 1 || o.Publishers < 1 || o.Window < 1 {
		errs = append(errs, errors.New("count, keys, publishers and window must be at least 1"))
	}
	if o.Duration <= 0 {
		errs = append(errs, errors.New("duration must be positive"))
	}
	if o.Rate < 0 || o.IdleWait < 0 {
		errs = append(errs, errors.New("rate and idle wait must not be negative"))
	}
	if !strings.Contains(o.SQL, "{in}") || !strings.Contains(o.SQL, "{out}") {
		errs = append(errs, errors.New("the query must name {in} and {out}"))
	}
	return errors.Join(errs...)
}

// RunCQ runs the cq scenario.
func RunCQ(ctx context.Context, o CQOptions) (*CQResult, error) {
	o.defaults()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("bench cq: %w", err)
	}
	api := &apiClient{base: strings.TrimSuffix(o.API, "/"), token: o.Token}
	sql := strings.NewReplacer("{in}", o.Input, "{out}", o.Output).Replace(o.SQL)
	res := &CQResult{Mode: "live", SQL: sql, Keys: o.Keys}
	if o.Replay {
		res.Mode = "replay"
	}
	// A clean slate: the query and streams of a previous run go.
	_ = api.do(ctx, "DELETE", "/v1/queries/"+url.PathEscape(o.Output), "", nil)
	for _, s := range []string{o.Output, o.Input} {
		_ = api.do(ctx, "DELETE", "/v1/streams/"+url.PathEscape(s), "", nil)
	}
	body, _ := json.Marshal(map[string]string{"name": o.Input})
	if err := api.do(ctx, "POST", "/v1/streams", string(body), nil); err != nil {
		return nil, fmt.Errorf("bench cq: create stream %s: %w", o.Input, err)
	}
	create := func() error {
		b, _ := json.Marshal(map[string]string{"sql": sql})
		if err := api.do(ctx, "POST", "/v1/query", string(b), nil); err != nil {
			return fmt.Errorf("bench cq: create the query: %w", err)
		}
		return nil
	}
	deadline := time.Now().Add(o.Duration)
	start := time.Now()
	if !o.Replay {
		if err := create(); err != nil {
			return nil, err
		}
		start = time.Now()
	}
	var published atomic.Int64
	stopProgress := o.progress(ctx, api, &published, !o.Replay)
	err := o.publish(ctx, deadline, &published)
	stopProgress()
	res.Published = published.Load()
	res.PubRate = float64(res.Published) / time.Since(start).Seconds()
	if err != nil {
		return nil, err
	}
	if o.Replay {
		// Every record stored before the query starts.
		if err := waitStored(ctx, api, o.Input, res.Published, deadline.Add(o.Duration)); err != nil {
			return nil, err
		}
		start = time.Now() // the query starts reading as it is created
		if err := create(); err != nil {
			return nil, err
		}
	} else if q, err := api.query(ctx, o.Output); err == nil {
		res.LagAtEnd = q.Lag
	}
	// Until the query has read every record, or as long as publishing
	// was allowed.
	stopProgress = o.progress(ctx, api, &published, true)
	defer stopProgress()
	limit := time.Now().Add(o.Duration)
	var q queryFigures
	for {
		var err error
		if q, err = api.query(ctx, o.Output); err != nil {
			return nil, err
		}
		if q.RecordsIn >= res.Published && q.Lag == 0 || q.Status == "paused" || time.Now().After(limit) || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Seconds = time.Since(start).Seconds()
	res.RecordsIn, res.RowsOut, res.Lag, res.LagSeconds, res.StateBytes, res.Status, res.Error = q.RecordsIn, q.RowsOut, q.Lag, q.LagSeconds, q.StateBytes, q.Status, q.Error
	res.Rate = float64(res.RecordsIn) / res.Seconds
	if !o.Replay && res.Published > 0 && q.Status == "running" {
		if err := o.measureEmit(ctx, api, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// progress prints a line a second until stopped; with the query's
// figures if it exists.
func (o *CQOptions) progress(ctx context.Context, api *apiClient, published *atomic.Int64, exists bool) (stop func()) {
	if o.Progress == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !exists {
				fmt.Fprintf(o.Progress, "published %d (the query starts once they are stored)\n", published.Load())
				continue
			}
			q, err := api.query(ctx, o.Output)
			if err != nil {
				fmt.Fprintf(o.Progress, "published %d, query: %v\n", published.Load(), err)
				continue
			}
			fmt.Fprintf(o.Progress, "published %d, query %s: read %d, lag %d, rows out %d, state %d bytes\n", published.Load(), q.Status, q.RecordsIn, q.Lag, q.RowsOut, q.StateBytes)
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// publish publishes Count records over the publishers, QoS 1, Window in
// flight each, until Count or the deadline.
func (o *CQOptions) publish(ctx context.Context, deadline time.Time, published *atomic.Int64) error {
	var next atomic.Int64
	errs := make(chan error, o.Publishers)
	var wg sync.WaitGroup
	for p := range o.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- o.publisher(ctx, p, deadline, &next, published)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (o *CQOptions) publisher(ctx context.Context, p int, deadline time.Time, next, published *atomic.Int64) error {
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + o.Broker).SetClientID(fmt.Sprintf("bench-cq-%d-%d", time.Now().UnixNano(), p)).
		SetAutoReconnect(false).SetMaxResumePubInFlight(o.Window).SetWriteTimeout(10 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("bench cq: connect to %s: %v", o.Broker, tok.Error())
	}
	defer c.Disconnect(0)
	inflight := make([]paho3.Token, 0, o.Window)
	wait := func(toks []paho3.Token) error {
		for _, tok := range toks {
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				return fmt.Errorf("bench cq: publish not acknowledged: %v", tok.Error())
			}
			published.Add(1)
		}
		return nil
	}
	topic := o.Input + "/" + strconv.Itoa(p)
	var buf []byte
	pace := newPacer(o.Rate / float64(o.Publishers))
	for ctx.Err() == nil && time.Now().Before(deadline) {
		pace.wait(ctx)
		i := next.Add(1) - 1
		if i >= int64(o.Count) {
			break
		}
		buf = fmt.Appendf(buf[:0], `{"k":"k%d","v":%d}`, i%int64(o.Keys), i%1000)
		inflight = append(inflight, c.Publish(topic, 1, false, bytes.Clone(buf)))
		if len(inflight) == o.Window {
			// The oldest half acknowledged before more go out.
			half := o.Window / 2
			if err := wait(inflight[:max(half, 1)]); err != nil {
				return err
			}
			inflight = append(inflight[:0], inflight[max(half, 1):]...)
		}
	}
	return wait(inflight)
}

// measureEmit waits up to IdleWait for the query's windows to close, then
// reads its output back for res.Emit.
func (o *CQOptions) measureEmit(ctx context.Context, api *apiClient, res *CQResult) error {
	if o.IdleWait > 0 {
		if err := waitWindowsClosed(ctx, api, o.Output, o.IdleWait); err != nil {
			return err
		}
	}
	last, err := lastTimestamp(ctx, api, o.Input, res.Published)
	if err != nil {
		return err
	}
	res.Emit, err = emitDelays(ctx, api, o.Output, last)
	return err
}

// waitStored waits until stream holds n records.
func waitStored(ctx context.Context, api *apiClient, stream string, n int64, limit time.Time) error {
	for {
		var info struct {
			Records int64 `json:"records"`
		}
		if err := api.do(ctx, "GET", "/v1/streams/"+url.PathEscape(stream), "", &info); err != nil {
			return fmt.Errorf("bench cq: stream %s: %w", stream, err)
		}
		if info.Records >= n {
			return nil
		}
		if time.Now().After(limit) || ctx.Err() != nil {
			return fmt.Errorf("bench cq: stream %s holds %d records of %d published", stream, info.Records, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// queryFigures are the fields of GET /v1/queries/{id} the run reads.
type queryFigures struct {
	Status     string  `json:"status"`
	Error      string  `json:"error"`
	RecordsIn  int64   `json:"records_in"`
	RowsOut    int64   `json:"rows_out"`
	Lag        int64   `json:"lag"`
	LagSeconds float64 `json:"lag_seconds"`
	StateBytes int64   `json:"state_bytes"`
}

// apiClient calls the node's REST API.
type apiClient struct {
	base, token string
}

func (a *apiClient) query(ctx context.Context, id string) (queryFigures, error) {
	var q queryFigures
	err := a.do(ctx, "GET", "/v1/queries/"+url.PathEscape(id), "", &q)
	return q, err
}

// do calls the API; an answer other than 2xx is an error with its body.
func (a *apiClient) do(ctx context.Context, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// String formats the summary.
func (r *CQResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode %s, %d keys\nquery: %s\n", r.Mode, r.Keys, r.SQL)
	fmt.Fprintf(&b, "published %d records (%.0f/s, QoS 1)\n", r.Published, r.PubRate)
	fmt.Fprintf(&b, "query read %d records in %.2f s: %.0f records/s; %d rows out\n", r.RecordsIn, r.Seconds, r.Rate, r.RowsOut)
	if r.Mode == "live" {
		fmt.Fprintf(&b, "lag when publishing ended: %d records\n", r.LagAtEnd)
	}
	fmt.Fprintf(&b, "at the end: status %s, lag %d records (%.2f s), state %d bytes\n", r.Status, r.Lag, r.LagSeconds, r.StateBytes)
	if r.Error != "" {
		fmt.Fprintf(&b, "error: %s\n", r.Error)
	}
	if e := r.Emit; e != nil {
		fmt.Fprintf(&b, "windows out after their end: %d rows, p50 %.1f ms, p99 %.1f ms, max %.1f ms", e.Rows, e.P50Ms, e.P99Ms, e.MaxMs)
		if e.Truncated {
			fmt.Fprintf(&b, " (first %d rows)", maxEmitRows)
		}
		fmt.Fprintf(&b, "\nwindows closed while the input was idle: %d rows, the last out %.2f s after its end\n", e.IdleRows, e.IdleMaxS)
	}
	return b.String()
}
