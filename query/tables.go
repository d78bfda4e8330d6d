package query

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
)

// colDef describes one column of a table.
type colDef struct {
	name string
	typ  Type
	desc string
}

// statTableDef describes one statistics table.
type statTableDef struct {
	name string
	desc string
	cols []colDef
}

// Schema qualifiers: stats.<table> and stream.<name> name a statistics
// table or a stream explicitly (a stream may be named like a statistics
// table).
const (
	schemaStats  = "stats"
	schemaStream = "stream"
)

// statTableDefs returns the statistics tables. docs/sql.md documents the
// same columns; DESCRIBE shows these descriptions.
func statTableDefs() []statTableDef {
	rateCols := func(what, bytesWhat string) []colDef {
		return []colDef{
			{"stream_name", TText, "stream name"},
			{"throughput_1min", TFloat, what + " per second, averaged over the last minute"},
			{"throughput_5min", TFloat, what + " per second, averaged over the last 5 minutes"},
			{"throughput_10min", TFloat, what + " per second, averaged over the last 10 minutes"},
			{"bytes_1min", TFloat, bytesWhat + " per second, averaged over the last minute"},
			{"bytes_5min", TFloat, bytesWhat + " per second, averaged over the last 5 minutes"},
			{"bytes_10min", TFloat, bytesWhat + " per second, averaged over the last 10 minutes"},
		}
	}
	return []statTableDef{
		{name: "streams", desc: "one row per stream: size, offsets, retention", cols: []colDef{
			{"name", TText, "stream name"},
			{"records", TInt, "records kept (next_offset - first_offset)"},
			{"bytes", TInt, "encoded size of the records kept, in bytes"},
			{"first_offset", TInt, "offset of the oldest record kept"},
			{"last_offset", TInt, "offset of the newest record (NULL if the stream is empty)"},
			{"next_offset", TInt, "offset the next record will get"},
			{"created_at", TTime, "when the stream was created"},
			{"last_append", TTime, "timestamp of the newest record (NULL if none)"},
			{"retention", TText, "retention limits in words ('unlimited' if none)"},
			{"retention_max_age_s", TFloat, "records older than this many seconds are deleted (NULL: no age limit)"},
			{"retention_max_bytes", TInt, "the oldest records are deleted beyond this many bytes (NULL: no limit)"},
			{"retention_max_records", TInt, "the oldest records are deleted beyond this many records (NULL: no limit)"},
		}},
		{name: "append_throughput", desc: "records and bytes appended per second, per stream (each record counted once across the cluster)",
			cols: rateCols("records appended", "encoded bytes appended")},
		{name: "read_throughput", desc: "records and bytes read per second, per stream, on every node (consumer groups, REST, SQL)",
			cols: rateCols("records read", "payload bytes read")},
		{name: "groups", desc: "one row per consumer group ($share/<group>/<filter>)", cols: []colDef{
			{"group", TText, "group name (a reserved word: write `group`)"},
			{"filter", TText, "topic filter of the group"},
			{"strategy", TText, "dispatch strategy"},
			{"members", TInt, "members connected now"},
			{"lag", TInt, "matching records not yet done (a reserved word: write `lag`)"},
			{"in_flight", TInt, "deliveries awaiting an acknowledgement"},
			{"delivered", TInt, "deliveries since the node started (redeliveries included)"},
			{"acked", TInt, "acknowledgements since the node started"},
			{"redelivered", TInt, "redeliveries since the node started (ack timeout or member gone)"},
			{"dead_lettered", TInt, "records moved to the dead-letter stream since the node started"},
			{"oldest_unacked_age", TFloat, "seconds the oldest unacknowledged delivery has waited (0 if none)"},
			{"dead_letter_stream", TText, "stream receiving dead letters"},
			{"created_at", TTime, "when the group was created"},
			{"node", TText, "node running the group (in a cluster every node runs its own)"},
		}},
		{name: "consumers", desc: "one row per connected member of a consumer group", cols: []colDef{
			{"group", TText, "group name (a reserved word: write `group`)"},
			{"filter", TText, "topic filter of the group"},
			{"client_id", TText, "MQTT client id of the member"},
			{"in_flight", TInt, "deliveries to this member awaiting an acknowledgement"},
			{"window", TInt, "most deliveries the member may hold (Receive Maximum)"},
			{"delivered", TInt, "deliveries to this member since it joined"},
			{"acked", TInt, "acknowledgements from this member since it joined"},
			{"qos", TInt, "QoS of the member's subscription"},
			{"connected_at", TTime, "when the member joined the group"},
			{"node", TText, "node the member is connected to"},
		}},
		{name: "nodes", desc: "one row per member of the cluster (this node alone when standalone)", cols: []colDef{
			{"id", TText, "node id"},
			{"status", TText, "alive, suspect, failed or left"},
			{"gossip", TText, "membership gossip address (empty when standalone)"},
			{"rpc", TText, "replication and forwarding address (empty when standalone)"},
			{"mqtt", TText, "MQTT/TCP address"},
			{"http", TText, "HTTP address"},
			{"version", TText, "mqstream version"},
			{"disk_free_bytes", TInt, "bytes available on the filesystem of the node's data directory (NULL when unknown)"},
			{"disk_total_bytes", TInt, "size in bytes of the filesystem of the node's data directory (NULL when unknown)"},
			{"shards_led", TInt, "shards the node leads (NULL when standalone)"},
			{"shards_held", TInt, "shards the node holds a replica of (NULL when standalone)"},
		}},
		{name: "shards", desc: "one row per shard of the cluster, as this node sees it (none when standalone)", cols: []colDef{
			{"id", TInt, "shard number (a stream's shard is a hash of its name)"},
			{"leader", TText, "node id of the shard's leader, asked of its replicas when this node holds none (NULL while none is known)"},
			{"term", TInt, "Raft term of this node's replica, or of the leader its replicas name when this node holds none (NULL while none is known)"},
			{"replicas", TJSON, "node ids holding a replica, the preferred leader first, as a JSON array"},
			{"applied", TInt, "last Raft entry this node's replica applied (NULL when it holds none)"},
			{"local", TBool, "this node holds a replica of the shard"},
			{"lag", TInt, "Raft entries the shard's slowest replica has applied fewer than its most advanced one (NULL when fewer than two replicas answered; a reserved word: write `lag`)"},
		}},
		{name: "sessions", desc: "one row per MQTT session: connected clients and sessions kept for absent ones", cols: []colDef{
			{"client_id", TText, "MQTT client id"},
			{"connected", TBool, "the client is connected now"},
			{"persistent", TBool, "the session outlives its connection (MQTT 3.1.1 clean session 0, MQTT 5 session expiry > 0)"},
			{"protocol_version", TInt, "MQTT protocol version (4 = 3.1.1, 5 = 5.0)"},
			{"expiry", TInt, "session expiry interval in seconds (what is left of it after a restart); 0: ends with its connection; NULL: never expires"},
			{"disconnected_at", TTime, "when an absent client left (NULL while connected)"},
			{"subscriptions", TInt, "subscriptions of the session"},
			{"queued", TInt, "messages waiting to be sent to the client (on disk while it is away)"},
			{"in_flight", TInt, "messages sent and not yet acknowledged"},
			{"node", TText, "node holding the session (every node's sessions are listed)"},
		}},
		{name: "queries", desc: "one row per continuous query of every node (SHOW QUERIES: this node's)", cols: queryCols()},
		{name: "append_latency", desc: "latency of appends (submit to durable) over the last minute, one row per node", cols: []colDef{
			{"p50", TFloat, "median, milliseconds"},
			{"p90", TFloat, "90th percentile, milliseconds"},
			{"p99", TFloat, "99th percentile, milliseconds"},
			{"p999", TFloat, "99.9th percentile, milliseconds"},
			{"mean", TFloat, "mean, milliseconds"},
			{"appends", TInt, "append requests completed in the window"},
			{"window_s", TFloat, "seconds the figures cover (60, or the node's uptime if shorter)"},
			{"node", TText, "node whose store the appends completed on"},
		}},
	}
}

// metaColumns are the columns every stream has, before its payload fields.
func metaColumns() []colDef {
	return []colDef{
		{"_offset", TInt, "record offset in the stream (dense, from 0)"},
		{"_timestamp", TTime, "server time the record was appended (never decreases within a stream)"},
		{"_topic", TText, "MQTT topic the record was published on"},
		{"_client_id", TText, "publisher's MQTT client id (empty for REST writes)"},
		{"_qos", TInt, "publish QoS (0, 1, 2)"},
		{"_retain", TBool, "publish retain flag"},
		{"_payload", TText, "the payload as text (binary payloads: use hex(_payload) or length(_payload))"},
		{"_content_type", TText, "MQTT 5 content type (NULL if none)"},
		{"_user_properties", TJSON, "MQTT 5 user properties as [{\"key\":..,\"value\":..}] (NULL if none)"},
	}
}

// Indexes of the metadata columns in a stream row.
const (
	colOffset = iota
	colTimestamp
	colTopic
	colClientID
	colQoS
	colRetain
	colPayload
	colContentType
	colUserProps
	numMeta
)

// fieldInfo is a payload field seen in a stream's sampled records.
type fieldInfo struct {
	name  string
	seen  int
	types map[string]int // by typeName
}

// Field discovery samples this many of the newest and oldest records.
const (
	sampleNewest = 200
	sampleOldest = 50
)

// sampleFields reads up to sampleNewest + sampleOldest records of a stream
// and returns the top-level fields of its JSON-object payloads in order of
// first appearance, and how many records it read.
func sampleFields(ctx context.Context, st Store, info streams.StreamInfo) ([]fieldInfo, int, error) {
	var fields []fieldInfo
	idx := map[string]int{}
	n := 0
	visit := func(r streams.Record) (bool, error) {
		n++
		for _, kv := range objectFields(r.Payload) {
			i, ok := idx[kv.key]
			if !ok {
				i = len(fields)
				idx[kv.key] = i
				fields = append(fields, fieldInfo{name: kv.key, types: map[string]int{}})
			}
			fields[i].seen++
			fields[i].types[typeName(fromJSON(kv.val))]++
		}
		return true, nil
	}
	if info.Records == 0 {
		return nil, 0, nil
	}
	newestFrom := info.FirstOffset
	if info.Records > sampleNewest {
		newestFrom = info.NextOffset - sampleNewest
	}
	if newestFrom > info.FirstOffset {
		oldestTo := min(info.FirstOffset+sampleOldest, newestFrom)
		if err := st.Scan(ctx, info.Name, info.FirstOffset, oldestTo, visit); err != nil {
			return nil, n, err
		}
	}
	if err := st.Scan(ctx, info.Name, newestFrom, info.NextOffset, visit); err != nil {
		return nil, n, err
	}
	return fields, n, nil
}

// describeTypes renders the observed types of a field ("number", or
// "number 12, text 3").
func (f fieldInfo) describeTypes() string {
	if len(f.types) == 1 {
		for t := range f.types {
			return t
		}
	}
	var parts []string
	for _, t := range []string{"number", "text", "bool", "json", "null"} {
		if c := f.types[t]; c > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, c))
		}
	}
	return strings.Join(parts, ", ")
}

// statRows returns the current rows of a statistics table.
func (e *Engine) statRows(ctx context.Context, name string) ([][]any, error) {
	switch name {
	case "streams":
		list := e.opts.Store.ListStreams
		if cl, ok := e.opts.Store.(ContextLister); ok {
			list = func() []streams.StreamInfo { return cl.ListStreamsContext(ctx) }
		}
		var rows [][]any
		for _, info := range list() {
			rows = append(rows, streamRow(info))
		}
		return rows, nil
	case "append_throughput", "read_throughput":
		if e.opts.Stats == nil {
			return nil, errorf(Pos{}, "table %s is not available: this node runs no statistics sampler", name)
		}
		var rows [][]any
		for _, r := range e.opts.Stats.StreamRates(ctx) {
			rs := r.Append
			if name == "read_throughput" {
				rs = r.Read
			}
			rows = append(rows, []any{r.Stream, rs.M1.RecordsPerSec, rs.M5.RecordsPerSec, rs.M10.RecordsPerSec,
				rs.M1.BytesPerSec, rs.M5.BytesPerSec, rs.M10.BytesPerSec})
		}
		return rows, nil
	case "append_latency":
		if e.opts.Stats == nil {
			return nil, errorf(Pos{}, "table %s is not available: this node runs no statistics sampler", name)
		}
		var rows [][]any
		for _, l := range e.opts.Stats.AppendLatencies(ctx) {
			rows = append(rows, latencyRow(l))
		}
		return rows, nil
	case "nodes":
		if e.opts.Nodes == nil {
			return nil, errorf(Pos{}, "table nodes is not available on this node")
		}
		var rows [][]any
		for _, n := range e.opts.Nodes.Nodes(ctx) {
			rows = append(rows, []any{n.ID, n.Status, n.Gossip, n.RPC, n.MQTT, n.HTTP, n.Version, optInt(n.DiskFreeBytes), optInt(n.DiskTotalBytes),
				optInt(n.ShardsLed), optInt(n.ShardsHeld)})
		}
		return rows, nil
	case "shards":
		if e.opts.Shards == nil {
			return nil, errorf(Pos{}, "table shards is not available on this node")
		}
		var rows [][]any
		for _, s := range e.opts.Shards.Shards(ctx) {
			rows = append(rows, shardRow(s))
		}
		return rows, nil
	case "sessions":
		if e.opts.Sessions == nil {
			return nil, errorf(Pos{}, "table sessions is not available: this node runs no MQTT broker")
		}
		var rows [][]any
		for _, s := range e.opts.Sessions.Sessions(ctx) {
			var expiry, left any = int64(s.Expiry), nil
			if s.NeverExpires {
				expiry = nil
			}
			if !s.DisconnectedAt.IsZero() {
				left = s.DisconnectedAt
			}
			rows = append(rows, []any{s.ClientID, s.Connected, s.Persistent, int64(s.ProtocolVersion), expiry, left,
				int64(s.Subscriptions), int64(s.Queued), int64(s.InFlight), s.Node})
		}
		return rows, nil
	case "queries":
		if e.opts.QueryTable == nil {
			return nil, errorf(Pos{}, "table queries is not available: this node runs no continuous queries")
		}
		var rows [][]any
		for _, q := range e.opts.QueryTable.QueryRows(ctx) {
			rows = append(rows, append(queryRow(q.QueryInfo), q.Node))
		}
		return rows, nil
	case "groups", "consumers":
		if e.opts.Groups == nil {
			return nil, errorf(Pos{}, "table %s is not available: this node runs no consumer groups", name)
		}
		var rows [][]any
		for _, g := range e.opts.Groups.Groups(ctx) {
			if name == "groups" {
				rows = append(rows, groupRow(g))
				continue
			}
			for _, m := range g.Members {
				node := m.Node // a member connected to another node than its group's
				if node == "" {
					node = g.Node
				}
				rows = append(rows, []any{g.Name, g.Filter, m.ClientID, int64(m.InFlight), int64(m.Window),
					m.Delivered, m.Acked, int64(m.QoS), m.ConnectedAt, node})
			}
		}
		return rows, nil
	}
	return nil, fmt.Errorf("query: no statistics table %q", name)
}

func streamRow(info streams.StreamInfo) []any {
	var last, lastAppend, maxAge, maxBytes, maxRecords any
	if info.Records > 0 {
		last = int64(info.NextOffset - 1)
	}
	if !info.LastAppend.IsZero() {
		lastAppend = info.LastAppend
	}
	ret := info.Retention
	var words []string
	if ret.MaxAge > 0 {
		maxAge = ret.MaxAge.Seconds()
		words = append(words, "max_age="+ret.MaxAge.String())
	}
	if ret.MaxBytes > 0 {
		maxBytes = ret.MaxBytes
		words = append(words, fmt.Sprintf("max_bytes=%d", ret.MaxBytes))
	}
	if ret.MaxRecords > 0 {
		maxRecords = ret.MaxRecords
		words = append(words, fmt.Sprintf("max_records=%d", ret.MaxRecords))
	}
	retention := "unlimited"
	if len(words) > 0 {
		retention = strings.Join(words, " ")
	}
	return []any{info.Name, info.Records, info.Bytes, int64(info.FirstOffset), last, int64(info.NextOffset),
		info.CreatedAt, lastAppend, retention, maxAge, maxBytes, maxRecords}
}

func shardRow(s ShardRow) []any {
	var leader, term, applied any
	if s.Leader != "" {
		leader = s.Leader
	}
	if s.Local {
		term, applied = int64(s.Term), int64(s.Applied)
	} else if s.Term != 0 {
		term = int64(s.Term) // as its replicas see it
	}
	replicas := make([]any, len(s.Replicas))
	for i, id := range s.Replicas {
		replicas[i] = id
	}
	var lag any
	if s.Lag != nil {
		lag = int64(*s.Lag)
	}
	return []any{int64(s.ID), leader, term, replicas, applied, s.Local, lag}
}

func groupRow(g shared.GroupStats) []any {
	return []any{g.Name, g.Filter, string(g.Strategy), int64(len(g.Members)), g.Lag, g.InFlight, g.Delivered, g.Acked,
		g.Redelivered, g.DeadLettered, g.OldestUnackedAge.Seconds(), g.DeadLetter, g.Created, g.Node}
}

func latencyRow(l NodeLatency) []any {
	ms := func(d time.Duration) any {
		if l.Count == 0 {
			return nil
		}
		return float64(d) / float64(time.Millisecond)
	}
	return []any{ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Mean), l.Count, l.Span.Seconds(), l.Node}
}

// recordRow fills the columns of a stream row that the query uses: the
// metadata columns, the payload fields (from the decoded payload if the
// query needs it whole, else by extracting just those fields), and the
// hidden slot holding the decoded payload.
func recordRow(row []any, r *streams.Record, t *tableInst) {
	used := t.used
	for i := range row {
		row[i] = nil
	}
	if used[colOffset] {
		row[colOffset] = int64(r.Offset)
	}
	if used[colTimestamp] {
		row[colTimestamp] = r.Timestamp
	}
	if used[colTopic] {
		row[colTopic] = r.Topic
	}
	if used[colClientID] {
		row[colClientID] = r.ClientID
	}
	if used[colQoS] {
		row[colQoS] = int64(r.QoS)
	}
	if used[colRetain] {
		row[colRetain] = r.Retain
	}
	if used[colPayload] {
		row[colPayload] = string(r.Payload)
	}
	if used[colContentType] && r.ContentType != "" {
		row[colContentType] = r.ContentType
	}
	if used[colUserProps] && len(r.UserProperties) > 0 {
		props := make([]any, len(r.UserProperties))
		for i, p := range r.UserProperties {
			props[i] = map[string]any{"key": p.Key, "value": p.Value}
		}
		row[colUserProps] = props
	}
	switch {
	case t.needDoc:
		doc := decodeObject(r.Payload)
		if doc == nil {
			return
		}
		for i, f := range t.fields {
			if used[numMeta+i] {
				if v, ok := doc[f.name]; ok {
					row[numMeta+i] = fromJSON(v)
				}
			}
		}
		row[len(row)-1] = doc
	case t.needFields:
		if t.fields2 == nil {
			names := make([]string, numMeta+len(t.fields))
			for i, f := range t.fields {
				names[numMeta+i] = f.name
			}
			want := append([]bool(nil), used[:numMeta+len(t.fields)]...)
			clear(want[:numMeta])
			t.fields2 = newFieldReader(names, want)
		}
		t.fields2.read(r.Payload, row)
	}
}

// optInt is *v, or NULL when v is nil.
func optInt(v *int64) any {
	if v == nil {
		return nil
	}
	return *v
}
