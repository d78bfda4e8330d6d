package routes

import (
	"slices"
	"testing"

	"github.com/mqstream/mqstream/topic"
)

func matchNodes(t *trie, name string) []string {
	set := map[string]struct{}{}
	t.match(name, set)
	var out []string
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// TestTrieAgreesWithMatch checks the trie against topic.Match, the
// reference for MQTT matching, over filters and names with every kind of
// wildcard, '$' topics and empty levels.
func TestTrieAgreesWithMatch(t *testing.T) {
	filters := []string{"#", "+", "a", "a/b", "a/+", "a/#", "+/#", "+/+", "a/+/c", "a/b/#", "/a", "+/a", "a//b",
		"$SYS/#", "$foo/+", "+/b/#", "a/b/c/d", ""}
	names := []string{"a", "a/b", "a/b/c", "a/x/c", "b", "/a", "a//b", "$SYS/x", "$foo/bar", "$foo", "x/b", "x/b/c",
		"a/b/c/d", "", "/", "a/"}
	for i, f := range filters {
		var tr trie
		tr.add(f, "n")
		for _, name := range names {
			got := len(matchNodes(&tr, name)) == 1
			if want := topic.Match(f, name); got != want {
				t.Errorf("filter %q (#%d), topic %q: trie says %v, topic.Match %v", f, i, name, got, want)
			}
		}
	}
}

func TestTrieNodesAndRemoval(t *testing.T) {
	var tr trie
	tr.add("a/+", "n1")
	tr.add("a/#", "n2")
	tr.add("a/b", "n3")
	tr.add("a/b", "n1")
	if got := matchNodes(&tr, "a/b"); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("a/b: %v", got)
	}
	tr.remove("a/b", "n1")
	if got := matchNodes(&tr, "a/b"); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("a/b after removing n1's a/b (n1 still has a/+): %v", got)
	}
	tr.remove("a/+", "n1")
	tr.remove("a/b", "n3")
	tr.remove("a/#", "n2")
	tr.remove("never/added", "n2")
	if got := matchNodes(&tr, "a/b"); len(got) != 0 {
		t.Fatalf("a/b after removing all: %v", got)
	}
	if !tr.root.empty() {
		t.Fatalf("emptied trie keeps branches: %+v", tr.root.children)
	}
}
