package topic

import (
	"fmt"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/#", "a", true}, // '#' matches the parent level
		{"a/#", "a/b/c", true},
		{"a/+/c/#", "a/b/c", true},
		{"#", "a/b", true},
		{"+/#", "a", true},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+/+", "/a", true},
		{"/+", "/a", true},
		{"a/b", "a/b/", false},
		{"a/b/", "a/b/", true},
		{"a/+/", "a/b/", true},
		{"#", "$SYS/x", false},
		{"+/x", "$foo/x", false},
		{"$SYS/#", "$SYS/broker", true},
		{"a", "b", false},
		{"sensors/+/temperature", "sensors/7/temperature", true},
		{"sensors/+/temperature", "sensors/7/humidity", false},
	}
	for _, c := range cases {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	for _, ok := range []string{"a", "a/b", "#", "+", "a/+/b", "a/#", "+/+", "/"} {
		if err := ValidateFilter(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a#", "a+/b", "a/b+", "##", "a\x00"} {
		if err := ValidateFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMapper(t *testing.T) {
	m, err := NewMapper([]Rule{
		{Filter: "sensors/+/temperature", Stream: "temperatures"},
		{Filter: "sensors/#", Stream: "sensors-other"},
	}, DefaultRule{Kind: DefaultFirstLevel})
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]string{
		"sensors/1/temperature": "temperatures",
		"sensors/1/humidity":    "sensors-other",
		"sensors":               "sensors-other",
		"jobs/42":               "jobs",
		"jobs":                  "jobs",
		"$SYS/broker/uptime":    "",
		"$share/g/x":            "",
		"$other/x":              "",
		"/leading":              "",
		"has space/x":           "",
		"":                      "",
	} {
		got, ok := m.StreamFor(topic)
		if got != want || ok != (want != "") {
			t.Errorf("StreamFor(%q) = %q %v, want %q", topic, got, ok, want)
		}
	}

	none, _ := NewMapper(nil, DefaultRule{Kind: DefaultNone})
	if s, ok := none.StreamFor("a/b"); ok {
		t.Errorf("default none stored a/b in %q", s)
	}
	fixed, _ := NewMapper(nil, DefaultRule{Kind: DefaultStream, Stream: "all"})
	if s, ok := fixed.StreamFor("a/b"); !ok || s != "all" {
		t.Errorf("fixed default: %q %v", s, ok)
	}
}

func TestMapperRejectsBadRules(t *testing.T) {
	_, err := NewMapper([]Rule{
		{Filter: "ok/#", Stream: "fine"},
		{Filter: "a/#/b", Stream: "x"},
		{Filter: "c", Stream: "bad/name"},
		{Filter: "$share/g/x", Stream: "y"},
	}, DefaultRule{Kind: DefaultStream, Stream: ""})
	if err == nil {
		t.Fatal("bad rules accepted")
	}
	for _, want := range []string{"rules[1].filter", "rules[2].stream", "rules[3].filter", "default rule"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	for _, s := range []string{"first-level", "none", "stream:all"} {
		d, err := ParseDefaultRule(s)
		if err != nil || d.String() != s {
			t.Errorf("ParseDefaultRule(%q) = %v, %v", s, d, err)
		}
	}
	for _, s := range []string{"stream:", "stream:a/b", "everything"} {
		if _, err := ParseDefaultRule(s); err == nil {
			t.Errorf("ParseDefaultRule(%q) accepted", s)
		}
	}
}

func TestFiltersOverlap(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/#", "a", true},
		{"a", "a/#", true},
		{"a/#", "b/#", false},
		{"#", "x/y/z", true},
		{"+/b", "a/+", true},
		{"+/b", "a/c", false},
		{"a/b/c", "a/b", false},
		{"a/+/c", "a/#", true},
		{"sensors/+/temperature", "sensors/#", true},
		{"sensors/+/temperature", "jobs/#", false},
		{"a/+", "a", false},
	}
	for _, c := range cases {
		if got := FiltersOverlap(c.a, c.b); got != c.want {
			t.Errorf("FiltersOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := FiltersOverlap(c.b, c.a); got != c.want {
			t.Errorf("FiltersOverlap(%q, %q) = %v, want %v (symmetry)", c.b, c.a, got, c.want)
		}
	}
}

func TestMapperSources(t *testing.T) {
	m, _ := NewMapper([]Rule{
		{Filter: "sensors/+/temperature", Stream: "temperatures"},
		{Filter: "jobs/#", Stream: "jobs"},
	}, DefaultRule{Kind: DefaultFirstLevel})
	cases := []struct {
		filter string
		want   string
		all    bool
	}{
		{"jobs/#", "[jobs]", false},
		{"sensors/#", "[temperatures sensors]", false},
		{"sensors/1/humidity", "[sensors]", false},
		{"+/1/temperature", "[temperatures jobs]", true}, // jobs/1/temperature matches both
		{"#", "[temperatures jobs]", true},
		{"other/x", "[other]", false},
	}
	for _, c := range cases {
		names, all := m.Sources(c.filter)
		if fmt.Sprint(names) != c.want || all != c.all {
			t.Errorf("Sources(%q) = %v %v, want %s %v", c.filter, names, all, c.want, c.all)
		}
	}
	none, _ := NewMapper(nil, DefaultRule{Kind: DefaultNone})
	if names, all := none.Sources("jobs/#"); len(names) != 0 || all {
		t.Errorf("default none: %v %v", names, all)
	}
	if _, err := NewMapper([]Rule{{Filter: "x", Stream: "$dlq.x"}}, DefaultRule{}); err == nil {
		t.Error("rule to a reserved stream accepted")
	}
}
