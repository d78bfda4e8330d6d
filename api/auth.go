package api

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/mqstream/mqstream/query"
)

// Role is what a bearer token may do.
type Role int

const (
	// RoleRead may read: GET routes, POST /v1/query, /metrics.
	RoleRead Role = iota + 1
	// RoleWrite may also write records and publish.
	RoleWrite
	// RoleAdmin may also create, delete and seek streams and groups.
	RoleAdmin
)

// ParseRole parses read, write or admin.
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "write":
		return RoleWrite, nil
	case "admin":
		return RoleAdmin, nil
	}
	return 0, fmt.Errorf("role %q is not read, write or admin", s)
}

func (r Role) String() string {
	return [...]string{"none", "read", "write", "admin"}[r]
}

// Token grants a role to a bearer token.
type Token struct {
	Token string
	Role  Role
}

// requiredRole is the role a request needs.
func requiredRole(r *http.Request) Role {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return RoleRead
	case r.Method == http.MethodPost && r.URL.Path == "/v1/query":
		return RoleRead
	case r.Method == http.MethodPost && (r.URL.Path == "/v1/publish" || strings.HasSuffix(r.URL.Path, "/records")):
		return RoleWrite
	}
	return RoleAdmin
}

// open paths need no token: health checks must work for orchestrators, and
// a browser cannot send a bearer token when it loads the dashboard (its
// files hold no data; the page sends the token with its /v1 requests).
func openPath(p string) bool {
	return p == "/healthz" || p == "/readyz" || p == "/" || p == "/favicon.ico" || strings.HasPrefix(p, "/ui/")
}

// authenticate wraps h with bearer-token checks when tokens are configured:
// 401 without a valid token, 403 when its role is not enough.
func (s *Server) authenticate(h http.Handler) http.Handler {
	if len(s.opts.Tokens) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openPath(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || got == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mqstream"`)
			writeJSON(w, http.StatusUnauthorized, map[string]apiError{"error": {Code: "unauthorized",
				Message: "missing bearer token: send Authorization: Bearer <token>"}})
			return
		}
		role := Role(0)
		for _, t := range s.opts.Tokens {
			// Compare every token in constant time.
			if subtle.ConstantTimeCompare([]byte(got), []byte(t.Token)) == 1 {
				role = t.Role
			}
		}
		if role == 0 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mqstream", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, map[string]apiError{"error": {Code: "unauthorized", Message: "invalid bearer token"}})
			return
		}
		if need := requiredRole(r); role < need {
			writeJSON(w, http.StatusForbidden, map[string]apiError{"error": {Code: "forbidden",
				Message: fmt.Sprintf("%s %s needs the %s role; this token has %s", r.Method, r.URL.Path, need, role)}})
			return
		}
		if role < RoleAdmin {
			// SQL that creates or stops continuous queries needs admin.
			r = r.WithContext(query.ReadOnly(r.Context()))
		}
		h.ServeHTTP(w, r)
	})
}
