package query

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendJSONValueIsJSONMarshal: every value encodes as json.Marshal
// encodes it (times as their RFC 3339 text, as rows carry them), and what
// json.Marshal refuses is refused.
func TestAppendJSONValueIsJSONMarshal(t *testing.T) {
	when := time.Date(2026, 12, 4, 21, 0, 0, 123456789, time.FixedZone("x", 3600))
	values := []any{nil, true, false, int64(0), int64(-7), int64(math.MaxInt64), int64(math.MinInt64), 3,
		0.0, math.Copysign(0, -1), 1.5, -2.25, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64,
		"", "plain text 123", `quote"`, `back\slash`, "<b>&</b>", "tab\there", "\x00", "é", "日本", "\u2028", string([]byte{0xff, 'a'}),
		when, map[string]any{"a": 1.0}, []any{"x", nil}, json.RawMessage(`{"k":1}`), float32(1.1)}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		values = append(values, r.NormFloat64()*math.Pow(10, float64(r.IntN(60)-30)), r.Int64()-r.Int64())
	}
	for _, v := range values {
		want := v
		if t, ok := v.(time.Time); ok {
			want = t.UTC().Format(time.RFC3339Nano)
		}
		exp, _ := json.Marshal(want)
		got, err := appendJSONValue([]byte("x"), v)
		if err != nil || string(got) != "x"+string(exp) {
			t.Errorf("%T %v: %q, %v; json.Marshal %q", v, v, got, err, exp)
		}
	}
	for _, v := range []any{math.NaN(), math.Inf(1), math.Inf(-1), func() {}} {
		if _, err := appendJSONValue(nil, v); err == nil {
			t.Errorf("%T %v encoded", v, v)
		}
	}
}
