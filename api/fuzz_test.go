package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mqstream/mqstream/api"
)

// FuzzRecordsBody posts arbitrary bodies to the record-write endpoint of a
// real store: the API never panics, answers with a known status in the one
// error shape, and writes exactly the records it reports.
func FuzzRecordsBody(f *testing.F) {
	for _, seed := range []string{
		`{"payload":{"temp":21}}`,
		`{"records":[{"payload":"x"},{"payload":"aGk=","encoding":"base64"}]}`,
		`{"records":[{"payload":"%%","encoding":"base64"}]}`,
		`{"payload":1,"qos":3}`, `{"payload":null}`, `[]`, `{`, `{"records":{}}`, `{"payload":"x","records":[]}`,
		`{"payload":"x","user_properties":[{"key":"k","value":"v"}],"topic":"a/b"}`, "\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	s := startNode(f, nil)
	srv := api.New(api.Options{Store: s.n.Store(), Broker: s.n.Broker(), Groups: s.n.Groups(), MaxBodyBytes: 64 << 10, MaxBatch: 50, MaxPayload: 4096})
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		before, _ := s.n.Store().DescribeStream("fuzz")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/streams/fuzz/records", bytes.NewReader(body)))
		after, _ := s.n.Store().DescribeStream("fuzz")
		switch rec.Code {
		case http.StatusOK:
			var res struct{ Count int64 }
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || after.Records-before.Records != res.Count {
				t.Fatalf("200 but wrote %d records, reported %d (%v)", after.Records-before.Records, res.Count, err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%d without the error shape: %s", rec.Code, rec.Body)
			}
			if after.Records != before.Records {
				t.Fatalf("rejected request wrote %d records", after.Records-before.Records)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
