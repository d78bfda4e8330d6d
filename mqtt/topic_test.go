package mqtt

import (
	"strings"
	"testing"
)

func TestMatchTopic(t *testing.T) {
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
		if got := MatchTopic(c.filter, c.topic); got != c.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
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
