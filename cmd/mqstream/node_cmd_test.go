package main

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestShardRow(t *testing.T) {
	var sh map[string]any
	if err := json.Unmarshal([]byte(`{"id": 3, "leader": "n2", "term": 7, "replicas": ["n2", "n3", "n1"], "applied": 1234567, "local": true, "lag": 12}`), &sh); err != nil {
		t.Fatal(err)
	}
	if got, want := shardRow(sh), []string{"3", "n2", "7", "n2,n3,n1", "1234567", "12"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("row %q, want %q", got, want)
	}
	sh["leader"] = ""
	delete(sh, "lag")
	if got := shardRow(sh); got[1] != "(none)" || got[5] != "?" {
		t.Fatalf("shard without a leader, lag unknown: %q", got)
	}
}
