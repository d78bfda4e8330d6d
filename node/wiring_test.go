package node

import (
	"strings"
	"testing"

	"github.com/mqstream/mqstream/api"
	"github.com/mqstream/mqstream/config"
)

// TestTokenRolesAgreeWithAPI: config validates http.tokens roles without
// importing api; the roles it accepts are the ones api parses, and the
// tokens reach the API with their roles.
func TestTokenRolesAgreeWithAPI(t *testing.T) {
	cfg := testConfig(t.TempDir())
	for _, role := range []string{"read", "write", "admin"} {
		cfg.HTTP.Tokens = append(cfg.HTTP.Tokens, config.HTTPToken{Token: strings.Repeat(role[:1], 16), Role: role})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tokens, err := apiTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Token{{Token: strings.Repeat("r", 16), Role: api.RoleRead},
		{Token: strings.Repeat("w", 16), Role: api.RoleWrite}, {Token: strings.Repeat("a", 16), Role: api.RoleAdmin}}
	if len(tokens) != len(want) {
		t.Fatalf("tokens %v, want %v", tokens, want)
	}
	for i := range want {
		if tokens[i] != want[i] {
			t.Fatalf("tokens %v, want %v", tokens, want)
		}
	}

	cfg.HTTP.Tokens = []config.HTTPToken{{Token: strings.Repeat("o", 16), Role: "owner"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `http.tokens[0].role: role "owner" is not read, write or admin`) {
		t.Fatalf("config accepted role owner: %v", err)
	}
	if _, err := apiTokens(cfg); err == nil || !strings.Contains(err.Error(), "http.tokens[0].role") {
		t.Fatalf("apiTokens accepted role owner: %v", err)
	}
}
