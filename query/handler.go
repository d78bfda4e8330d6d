package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// MaxRequestBytes bounds the body of a POST /v1/query request.
const MaxRequestBytes = 1 << 20

// Request is the body of POST /v1/query.
type Request struct {
	SQL string `json:"sql"`
}

// Response is the body of a successful POST /v1/query.
type Response struct {
	Columns     []Column `json:"columns"`
	Rows        [][]any  `json:"rows"`
	RowsScanned int64    `json:"rows_scanned"`
	ElapsedMS   float64  `json:"elapsed_ms"`
	// Warnings say what the rows may lack (absent when nothing).
	Warnings []string `json:"warnings,omitempty"`
}

// ErrorBody is the error shape of the HTTP API.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error; Line and Column are set for errors in
// the SQL text.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
}

// Handler serves POST /v1/query: {"sql": "..."} in; 200 with columns,
// rows, rows_scanned, elapsed_ms and warnings (when any), or an error:
//
//	400 sql_syntax, sql_error  the statement (with line and column)
//	400 query_budget           the row or time budget stopped the query
//	400 bad_request            the request is not {"sql": "..."}
//	405 bad_request            not a POST
//	403 forbidden              CREATE STREAM or TERMINATE QUERY by a caller that may only read
//
// A push query (SELECT ... EMIT CHANGES) answers 200 at once and streams
// its rows until the client goes away (push.go).
//
//	413 too_large              body over 1 MiB
//	500 internal               anything else (logged)
func Handler(e *Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, ErrorDetail{Code: "bad_request", Message: "use POST with a JSON body {\"sql\": \"...\"}"})
			return
		}
		req, status, detail := decodeRequest(w, r)
		if status != 0 {
			writeError(w, status, detail)
			return
		}
		res, err := e.Query(r.Context(), req.SQL)
		if err != nil {
			var qe *Error
			if !errors.As(err, &qe) {
				qe = asError(err)
			}
			status := http.StatusBadRequest
			switch qe.Code {
			case CodeInternal:
				status = http.StatusInternalServerError
			case CodeForbidden:
				status = http.StatusForbidden
			}
			writeError(w, status, ErrorDetail{Code: qe.Code, Message: qe.Message, Line: qe.Line, Column: qe.Column})
			return
		}
		if res.Push != nil {
			e.streamPush(w, r, res)
			return
		}
		body := Response{Columns: res.Columns, Rows: res.Rows, RowsScanned: res.RowsScanned,
			ElapsedMS: float64(res.Elapsed) / float64(time.Millisecond), Warnings: res.Warnings}
		if body.Columns == nil {
			body.Columns = []Column{}
		}
		if body.Rows == nil {
			body.Rows = [][]any{}
		}
		b, err := json.Marshal(body)
		if err != nil {
			e.log.Error("query: encoding the result", "error", err)
			writeError(w, http.StatusInternalServerError, ErrorDetail{Code: CodeInternal, Message: "encoding the result: " + err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(b, '\n'))
	})
}

// decodeRequest reads {"sql": "..."}; a non-zero status means it failed.
func decodeRequest(w http.ResponseWriter, r *http.Request) (Request, int, ErrorDetail) {
	var req Request
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return req, http.StatusRequestEntityTooLarge, ErrorDetail{Code: "too_large",
				Message: fmt.Sprintf("request body is larger than %d bytes", MaxRequestBytes)}
		}
		return req, http.StatusBadRequest, ErrorDetail{Code: "bad_request", Message: "reading the request: " + err.Error()}
	}
	// Any Content-Type is accepted (curl -d sends a form type): the body
	// must be the JSON object either way.
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return req, http.StatusBadRequest, ErrorDetail{Code: "bad_request", Message: "the body must be a JSON object {\"sql\": \"...\"}: " + err.Error()}
	}
	if d.More() {
		return req, http.StatusBadRequest, ErrorDetail{Code: "bad_request", Message: "the body must hold one JSON object"}
	}
	if strings.TrimSpace(req.SQL) == "" {
		return req, http.StatusBadRequest, ErrorDetail{Code: "bad_request", Message: "\"sql\" is missing or empty"}
	}
	return req, 0, ErrorDetail{}
}

func writeError(w http.ResponseWriter, status int, d ErrorDetail) {
	b, _ := json.Marshal(ErrorBody{Error: d})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
