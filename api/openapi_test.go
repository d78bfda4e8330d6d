package api

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/shared"
)

// TestOpenAPIListsEveryRoute compares the embedded OpenAPI document with the
// routes the server registers, both ways.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	s := New(Options{})
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	registered := map[string]bool{}
	for _, rt := range s.routes {
		registered[rt.method+" "+rt.pattern] = true
	}
	var missing, extra []string
	for r := range registered {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for d := range documented {
		if !registered[d] {
			extra = append(extra, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("routes not in openapi.json: %v\ndocumented routes the server lacks: %v", missing, extra)
	}
}

// TestOpenAPISchemasMatchJSON: the documented fields of the dashboard's
// answers are those the handlers write.
func TestOpenAPISchemasMatchJSON(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	for name, v := range map[string]any{"Overview": overviewJSON{}, "Client": ClientInfo{}, "Member": memberJSON{},
		"GroupMember": shared.MemberStats{}, "Query": query.QueryInfo{}} {
		written := jsonFields(reflect.TypeOf(v))
		var documented []string
		for p := range doc.Components.Schemas[name].Properties {
			documented = append(documented, p)
		}
		sort.Strings(written)
		sort.Strings(documented)
		if strings.Join(written, " ") != strings.Join(documented, " ") {
			t.Errorf("schema %s documents %v, the handlers write %v", name, documented, written)
		}
	}
}

// jsonFields are the names encoding/json writes for struct type typ,
// with those of embedded structs (or pointers to them) in place.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" {
			continue
		}
		if ft := f.Type; f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			out = append(out, jsonFields(ft)...)
			continue
		}
		out = append(out, name)
	}
	return out
}
