package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestSQLPrintsWarnings: the warnings of a result (a cluster node that
// did not answer) go to the error output, whatever the format; the rows
// print as usual.
func TestSQLPrintsWarnings(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"columns":[{"name":"node","type":"text"}],"rows":[["n1"]],"rows_scanned":1,"elapsed_ms":1,`+
			`"warnings":["node n3 did not answer (timeout): its figures are left out"]}`)
	}))
	defer srv.Close()
	for _, format := range []string{"table", "json", "csv"} {
		out, errOut, err := runSQLCmd(t, nil, "--server", srv.URL, "-o", format, "-e", "SELECT node FROM append_latency")
		if err != nil || !strings.Contains(out, "n1") || strings.Contains(out, "WARNING") ||
			errOut != "WARNING: node n3 did not answer (timeout): its figures are left out\n" {
			t.Errorf("-o %s: %v\nout: %s\nerr: %s", format, err, out, errOut)
		}
	}
}
