// Package topic holds MQTT topic names and filters: matching, validation,
// overlap, and the rules that map topics to streams. It is a leaf: it knows
// stream names (package streams) and nothing of MQTT transport, so the
// broker, consumer groups, access control, configuration and SQL can share
// it without importing each other.
package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Match reports whether an MQTT topic filter matches a topic name
// (MQTT 3.1.1 and 5.0 section 4.7): '+' matches exactly one level, '#' (last)
// matches any number of levels including the parent level [MQTT-4.7.1-2], and
// a filter starting with a wildcard does not match a topic starting with '$'
// [MQTT-4.7.2-1].
func Match(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" && !fmore {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			// The topic ends here: "a/#" also matches "a".
			if !tmore && fmore && frest == "#" {
				return true
			}
			return fmore == tmore
		}
		filter, topic = frest, trest
	}
}

// ValidateFilter checks an MQTT topic filter: non-empty UTF-8 without NUL,
// '#' only as the whole last level, '+' only as a whole level.
func ValidateFilter(filter string) error {
	if filter == "" {
		return fmt.Errorf("topic filter is empty")
	}
	if !utf8.ValidString(filter) || strings.ContainsRune(filter, 0) {
		return fmt.Errorf("topic filter %q is not valid UTF-8 or contains NUL", filter)
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("topic filter %q: '#' must be the whole last level", filter)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("topic filter %q: '+' must be a whole level", filter)
		}
	}
	return nil
}

// SharePrefix is the prefix of shared subscription filters.
const SharePrefix = "$share/"

// IsSystem reports topics never stored as data: the broker's own $SYS
// tree and anything that looks like a shared-subscription filter.
func IsSystem(topic string) bool {
	return strings.HasPrefix(topic, "$SYS") || strings.HasPrefix(topic, SharePrefix) || topic == "$share"
}

// FiltersOverlap reports whether some topic name matches both filters.
func FiltersOverlap(a, b string) bool {
	for {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		if (al == "#" && !amore) || (bl == "#" && !bmore) {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			return brest == "#" // "a" and "a/#": '#' matches the parent level
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}

// ErrInvalidTopic: the topic is not a valid MQTT topic name for publishing.
var ErrInvalidTopic = errors.New("invalid topic name")

// ValidateName checks a topic to publish to: non-empty UTF-8 without
// wildcards or NUL, not a $SYS topic.
func ValidateName(t string) error {
	if t == "" {
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	}
	if err := ValidateFilter(t); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidTopic, err)
	}
	for _, r := range t {
		if r == '+' || r == '#' {
			return fmt.Errorf("%w: %q contains a wildcard", ErrInvalidTopic, t)
		}
	}
	if IsSystem(t) {
		return fmt.Errorf("%w: %q is reserved", ErrInvalidTopic, t)
	}
	return nil
}
