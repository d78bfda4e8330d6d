package streams

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	cases := []Record{
		{Topic: "a", Payload: []byte("x")},
		{Topic: "sensors/1/temp", Payload: []byte(`{"temp":21.5}`), QoS: 1, Retain: true, ClientID: "dev-1",
			ContentType: "application/json", ResponseTopic: "reply/1", CorrelationData: []byte{1, 2, 3},
			PayloadFormat: 1, HasPayloadFormat: true,
			UserProperties: []UserProperty{{"k", "v"}, {"k", "v2"}, {"", ""}}},
		{Topic: "empty", QoS: 2},
	}
	for i, in := range cases {
		ts := time.Unix(1700000000, int64(i)).UnixNano()
		b := appendRecord(nil, &in, ts)
		if len(b) > encodedSize(&in) {
			t.Fatalf("case %d: encoded %d bytes, size bound %d", i, len(b), encodedSize(&in))
		}
		out, err := decodeRecord(b, 42)
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		want := in
		want.Offset = 42
		want.Timestamp = time.Unix(0, ts)
		if !out.Timestamp.Equal(want.Timestamp) {
			t.Fatalf("case %d: timestamp %v, want %v", i, out.Timestamp, want.Timestamp)
		}
		out.Timestamp, want.Timestamp = time.Time{}, time.Time{}
		if !reflect.DeepEqual(normalize(out), normalize(want)) {
			t.Fatalf("case %d:\n got %+v\nwant %+v", i, out, want)
		}
		if got, err := recordTimestamp(b); err != nil || got != ts {
			t.Fatalf("case %d: timestamp %d, %v", i, got, err)
		}
	}
}

func TestRecordDecodeDoesNotAlias(t *testing.T) {
	b := appendRecord(nil, &Record{Topic: "t", Payload: []byte("hello")}, 1)
	r, err := decodeRecord(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if !bytes.Equal(r.Payload, []byte("hello")) || r.Topic != "t" {
		t.Fatalf("decoded record changed with its buffer: %+v", r)
	}
}

func TestRecordDecodeCorrupt(t *testing.T) {
	good := appendRecord(nil, &Record{Topic: "topic", ClientID: "c", ContentType: "ct",
		UserProperties: []UserProperty{{"a", "b"}}, Payload: []byte("p")}, 7)
	// Every truncation of the header must fail cleanly, never panic.
	for n := 0; n < len(good)-1; n++ {
		if _, err := decodeRecord(good[:n], 0); err == nil && n < len(good)-1 {
			// A truncation inside the payload is indistinguishable from a
			// shorter payload; only header truncations must fail.
			if n < len(good)-len("p") {
				t.Fatalf("truncated to %d bytes: no error", n)
			}
		} else if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: error %v is not ErrCorrupt", n, err)
		}
	}
	bad := append([]byte{9}, good[1:]...)
	if _, err := decodeRecord(bad, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown version: got %v", err)
	}
	// A huge user-property count must not allocate or loop.
	huge := []byte{recordVersion1, flagUserProps, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := decodeRecord(huge, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge property count: got %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, &Record{Topic: "a/b", Payload: []byte("x"), UserProperties: []UserProperty{{"k", "v"}}}, 5))
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b, 1)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same record.
		again, err := decodeRecord(appendRecord(nil, &r, r.Timestamp.UnixNano()), 1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(r), normalize(again)) {
			t.Fatalf("round trip changed record:\n%+v\n%+v", r, again)
		}
	})
}

// normalize maps empty and nil slices to one form for comparison.
func normalize(r Record) Record {
	if len(r.Payload) == 0 {
		r.Payload = nil
	}
	if len(r.CorrelationData) == 0 {
		r.CorrelationData = nil
	}
	if len(r.UserProperties) == 0 {
		r.UserProperties = nil
	}
	return r
}
