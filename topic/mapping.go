package topic

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mqstream/mqstream/streams"
)

// Rule maps the topics that match Filter to Stream.
type Rule struct {
	Filter string `json:"filter"`
	Stream string `json:"stream"`
}

// DefaultKind says what happens to a topic no rule matches.
type DefaultKind int

const (
	// DefaultFirstLevel stores the topic in the stream named after its first
	// level ("sensors/1/temp" -> "sensors").
	DefaultFirstLevel DefaultKind = iota
	// DefaultNone does not store the topic.
	DefaultNone
	// DefaultStream stores the topic in one fixed stream.
	DefaultStream
)

// DefaultRule is the rule applied when no Rule matches.
type DefaultRule struct {
	Kind   DefaultKind
	Stream string // for DefaultStream
}

// ParseDefaultRule parses "first-level", "none" or "stream:<name>".
func ParseDefaultRule(s string) (DefaultRule, error) {
	switch {
	case s == "first-level" || s == "":
		return DefaultRule{Kind: DefaultFirstLevel}, nil
	case s == "none":
		return DefaultRule{Kind: DefaultNone}, nil
	case strings.HasPrefix(s, "stream:"):
		name := strings.TrimPrefix(s, "stream:")
		if err := streams.ValidateName(name); err != nil {
			return DefaultRule{}, err
		}
		return DefaultRule{Kind: DefaultStream, Stream: name}, nil
	}
	return DefaultRule{}, fmt.Errorf("unknown default rule %q (want first-level, none or stream:<name>)", s)
}

// String returns the configuration form of the rule.
func (d DefaultRule) String() string {
	switch d.Kind {
	case DefaultNone:
		return "none"
	case DefaultStream:
		return "stream:" + d.Stream
	}
	return "first-level"
}

// Mapper decides which stream, if any, stores a topic. It is immutable and
// safe for concurrent use.
type Mapper struct {
	rules []Rule
	def   DefaultRule
}

// NewMapper validates the rules and returns a Mapper. Errors name the rule.
func NewMapper(rules []Rule, def DefaultRule) (*Mapper, error) {
	var errs []error
	for i, r := range rules {
		if err := ValidateFilter(r.Filter); err != nil {
			errs = append(errs, fmt.Errorf("rules[%d].filter: %w", i, err))
		} else if strings.HasPrefix(r.Filter, SharePrefix) || strings.HasPrefix(r.Filter, "$SYS") {
			errs = append(errs, fmt.Errorf("rules[%d].filter: %q: $share and $SYS topics are never stored", i, r.Filter))
		}
		if err := streams.ValidateName(r.Stream); err != nil {
			errs = append(errs, fmt.Errorf("rules[%d].stream: %w", i, err))
		} else if streams.IsReserved(r.Stream) {
			errs = append(errs, fmt.Errorf("rules[%d].stream: %q: names starting with '$' are reserved", i, r.Stream))
		}
	}
	if def.Kind == DefaultStream {
		if err := streams.ValidateName(def.Stream); err != nil {
			errs = append(errs, fmt.Errorf("default rule: %w", err))
		} else if streams.IsReserved(def.Stream) {
			errs = append(errs, fmt.Errorf("default rule: %q: names starting with '$' are reserved", def.Stream))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Mapper{rules: append([]Rule(nil), rules...), def: def}, nil
}

// Rules returns the explicit rules in match order.
func (m *Mapper) Rules() []Rule { return append([]Rule(nil), m.rules...) }

// Default returns the default rule.
func (m *Mapper) Default() DefaultRule { return m.def }

// StreamFor returns the stream that stores topic (first matching rule wins,
// then the default rule), or ok=false if the topic is not stored.
func (m *Mapper) StreamFor(topic string) (stream string, ok bool) {
	if topic == "" || IsSystem(topic) {
		return "", false
	}
	for i := range m.rules {
		if Match(m.rules[i].Filter, topic) {
			return m.rules[i].Stream, true
		}
	}
	switch m.def.Kind {
	case DefaultStream:
		if topic[0] == '$' {
			return "", false // like a wildcard, the default rule does not take $-topics
		}
		return m.def.Stream, true
	case DefaultFirstLevel:
		if topic[0] == '$' {
			return "", false
		}
		first, _, _ := strings.Cut(topic, "/")
		if streams.ValidateName(first) != nil {
			return "", false
		}
		return first, true
	}
	return "", false
}

// Sources tells which streams can hold records whose topics match filter:
// the streams of the rules whose filters overlap it, the default stream,
// and, when the default rule is first-level, the stream named after the
// filter's first level, or every stream (all = true) if that level is a
// wildcard. The answer is a superset: a reader still checks each record's
// topic against the filter. Reserved ('$') streams are never sources.
func (m *Mapper) Sources(filter string) (names []string, all bool) {
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			names = append(names, s)
		}
	}
	for _, r := range m.rules {
		if FiltersOverlap(r.Filter, filter) {
			add(r.Stream)
		}
	}
	if filter != "" && filter[0] == '$' {
		return names, false // only explicit rules store $-topics
	}
	switch m.def.Kind {
	case DefaultStream:
		add(m.def.Stream)
	case DefaultFirstLevel:
		first, _, _ := strings.Cut(filter, "/")
		if first == "+" || first == "#" {
			return names, true
		}
		if streams.ValidateName(first) == nil {
			add(first)
		}
	}
	return names, false
}
