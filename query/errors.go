package query

import (
	"errors"
	"fmt"
)

// Error codes, as the HTTP API reports them.
const (
	// CodeSyntax: the statement does not parse.
	CodeSyntax = "sql_syntax"
	// CodeSQL: the statement parses but cannot run as written: unknown table
	// or column, type mismatch, unsupported construct, bad argument.
	CodeSQL = "sql_error"
	// CodeBudget: the query hit its row or time budget and was stopped.
	CodeBudget = "query_budget"
	// CodeForbidden: the caller may not run this statement (it changes
	// the node and the caller may only read).
	CodeForbidden = "forbidden"
	// CodeInternal: the store or another part of the node failed.
	CodeInternal = "internal"
)

// Error is the error every Engine method returns. Line and Column are
// 1-based positions in the SQL text (0 when the error has no position).
type Error struct {
	Code    string
	Message string
	Line    int
	Column  int
	// Err is the underlying error, if any (store errors, context errors).
	Err error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d, column %d)", e.Message, e.Line, e.Column)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Pos is a position in the SQL text (1-based; 0 means unknown).
type Pos struct {
	Line, Column int
}

// errorf returns a CodeSQL error at pos.
func errorf(pos Pos, format string, args ...any) *Error {
	return &Error{Code: CodeSQL, Message: fmt.Sprintf(format, args...), Line: pos.Line, Column: pos.Column}
}

// withPos adds a position to err if it is an *Error without one; other
// errors become internal errors.
func withPos(err error, pos Pos) error {
	var qe *Error
	if errors.As(err, &qe) {
		if qe.Line == 0 && pos.Line > 0 {
			cp := *qe
			cp.Line, cp.Column = pos.Line, pos.Column
			return &cp
		}
		return qe
	}
	return err
}

// asError turns any error into an *Error (store and context errors become
// CodeInternal unless they are already *Error).
func asError(err error) *Error {
	var qe *Error
	if errors.As(err, &qe) {
		return qe
	}
	return &Error{Code: CodeInternal, Message: err.Error(), Err: err}
}
