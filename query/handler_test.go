package query

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func post(t *testing.T, url, contentType, body string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(&out); err != nil {
		t.Fatalf("response %q is not JSON: %v", b, err)
	}
	return resp.StatusCode, resp.Header, out
}

func TestHandlerContract(t *testing.T) {
	n := startNode(t, nodeOptions{rules: fixtureRules, maxRows: 5})
	fillFixture(n)
	srv := httptest.NewServer(Handler(n.engine))
	defer srv.Close()

	status, hdr, body := post(t, srv.URL, "application/json", `{"sql": "SELECT _offset, sensor, temp, tags FROM temperatures WHERE _offset BETWEEN 2 AND 3"}`)
	if status != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q, body %v", status, hdr.Get("Content-Type"), body)
	}
	b, _ := json.Marshal(map[string]any{"columns": body["columns"], "rows": body["rows"], "rows_scanned": body["rows_scanned"]})
	want := `{"columns":[{"name":"_offset","type":"int"},{"name":"sensor","type":"text"},{"name":"temp","type":"float"},{"name":"tags","type":"json"}],` +
		`"rows":[[2,"s1",22.5,null],[3,"s3",35.5,["roof","south"]]],"rows_scanned":2}`
	if string(b) != want {
		t.Fatalf("body\n%s\nwant\n%s", b, want)
	}
	if ms, err := body["elapsed_ms"].(json.Number).Float64(); err != nil || ms < 0 {
		t.Fatalf("elapsed_ms %v", body["elapsed_ms"])
	}

	errCases := []struct {
		name, contentType, body string
		status                  int
		code                    string
		line, column            int
	}{
		{"syntax", "application/json", `{"sql": "SELECT *\nFROM temperatures WHERE"}`, 400, "sql_syntax", 2, 24},
		{"unknown column", "application/json", `{"sql": "SELECT nope FROM jobs"}`, 400, "sql_error", 1, 8},
		{"row budget", "application/json", `{"sql": "SELECT count(*) FROM temperatures"}`, 400, "query_budget", 0, 0},
		{"unknown field", "application/json", `{"sql": "SELECT 1", "limit": 3}`, 400, "bad_request", 0, 0},
		{"not JSON", "application/json", `SELECT 1`, 400, "bad_request", 0, 0},
		{"no sql", "application/json", `{}`, 400, "bad_request", 0, 0},
		{"two objects", "application/json", `{"sql":"SELECT 1"} {}`, 400, "bad_request", 0, 0},
		{"too large", "application/json", `{"sql": "SELECT '` + strings.Repeat("x", MaxRequestBytes) + `'"}`, 413, "too_large", 0, 0},
	}
	for _, c := range errCases {
		status, hdr, body := post(t, srv.URL, c.contentType, c.body)
		e, _ := body["error"].(map[string]any)
		line, _ := e["line"].(json.Number)
		col, _ := e["column"].(json.Number)
		if status != c.status || e["code"] != c.code || line.String() != itoaOr(c.line) || col.String() != itoaOr(c.column) ||
			e["message"] == "" || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s: status %d body %v, want %d %s at %d:%d", c.name, status, body, c.status, c.code, c.line, c.column)
		}
	}

	// curl -d sends application/x-www-form-urlencoded: the JSON body is what counts.
	if status, _, body := post(t, srv.URL, "application/x-www-form-urlencoded", `{"sql":"SELECT 1 AS one"}`); status != 200 || body["rows"] == nil {
		t.Fatalf("form content type: %d %v", status, body)
	}

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d", resp.StatusCode)
	}

	// A failing store is an internal error (500), not the user's fault.
	n.store.Close()
	status, _, body = post(t, srv.URL, "application/json", `{"sql": "SELECT * FROM jobs"}`)
	if e, _ := body["error"].(map[string]any); status != 500 || e["code"] != "internal" {
		t.Fatalf("closed store: %d %v", status, body)
	}
}

func itoaOr(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}
