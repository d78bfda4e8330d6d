package auth

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/mqstream/mqstream/topic"
)

// Action is what a client wants to do with a topic.
type Action string

const (
	Publish   Action = "publish"
	Subscribe Action = "subscribe"
	// All matches both actions (in rules only).
	All Action = "all"
)

// Rule is one line of the access-control list.
type Rule struct {
	// User and ClientID are glob patterns (path.Match syntax: *, ?, [...])
	// on the username and client id; empty matches any. User "" also
	// matches anonymous clients; use "?*" to require a username.
	User     string
	ClientID string
	Action   Action
	// Filter is an MQTT topic filter; %u and %c are replaced by the client's
	// username and client id.
	Filter string
	// Groups, for subscriptions to $share/<group>/<filter>, lists glob
	// patterns the group name must match; empty matches any group.
	Groups []string
	Allow  bool
}

// ACL is an ordered rule list with a default decision.
type ACL struct {
	Rules []Rule
	// DefaultAllow decides when no rule matches.
	DefaultAllow bool
}

// Validate reports every invalid rule at once, naming its index.
func (a ACL) Validate() error {
	var errs []error
	for i, r := range a.Rules {
		for _, p := range append([]string{r.User, r.ClientID}, r.Groups...) {
			if _, err := path.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("acl[%d]: bad pattern %q: %v", i, p, err))
			}
		}
		switch r.Action {
		case Publish, Subscribe, All:
		default:
			errs = append(errs, fmt.Errorf("acl[%d].action: %q is not publish, subscribe or all", i, r.Action))
		}
		probe := strings.NewReplacer("%u", "u", "%c", "c").Replace(r.Filter)
		if err := topic.ValidateFilter(probe); err != nil {
			errs = append(errs, fmt.Errorf("acl[%d].filter: %v", i, err))
		}
		if strings.Contains(r.Filter, "$share") {
			errs = append(errs, fmt.Errorf("acl[%d].filter: name the group in groups, not in the filter", i))
		}
	}
	return errors.Join(errs...)
}

// Allowed decides whether the client (username, client id) may perform act
// on name: for Publish a topic name, for Subscribe a topic filter
// (possibly $share/<group>/<filter>).
func (a ACL) Allowed(user, clientID string, act Action, name string) bool {
	group := ""
	if act == Subscribe {
		if rest, ok := strings.CutPrefix(name, "$share/"); ok {
			group, name, _ = strings.Cut(rest, "/")
		}
	}
	for _, r := range a.Rules {
		if r.Action != All && r.Action != act {
			continue
		}
		if !globMatch(r.User, user) || !globMatch(r.ClientID, clientID) {
			continue
		}
		if group != "" && len(r.Groups) > 0 && !anyGlob(r.Groups, group) {
			continue
		}
		filter := expand(r.Filter, user, clientID)
		if filter == "" {
			continue // %u for an anonymous client: the rule cannot apply
		}
		var match bool
		if act == Publish {
			match = topic.Match(filter, name)
		} else {
			match = FilterCovers(filter, name)
		}
		if match {
			return r.Allow
		}
	}
	return a.DefaultAllow
}

// expand substitutes %u and %c; it returns "" if a substituted value is
// empty or contains MQTT special characters (a username "a/#" must not widen
// "devices/%u/#").
func expand(filter, user, clientID string) string {
	if !strings.Contains(filter, "%") {
		return filter
	}
	for _, v := range []struct{ tok, val string }{{"%u", user}, {"%c", clientID}} {
		if !strings.Contains(filter, v.tok) {
			continue
		}
		if v.val == "" || strings.ContainsAny(v.val, "/+#") {
			return ""
		}
		filter = strings.ReplaceAll(filter, v.tok, v.val)
	}
	return filter
}

// globMatch matches s against a path.Match pattern; an empty pattern
// matches anything, the empty string included.
func globMatch(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	ok, _ := path.Match(pattern, s)
	return ok
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if globMatch(p, s) {
			return true
		}
	}
	return false
}

// FilterCovers reports whether every topic filter f can match is matched by
// rule filter r (so a subscription to f reveals nothing r does not allow).
func FilterCovers(r, f string) bool {
	for {
		rl, rrest, rmore := strings.Cut(r, "/")
		fl, frest, fmore := strings.Cut(f, "/")
		if rl == "#" && !rmore {
			return true
		}
		switch {
		case fl == "#":
			return false // f reaches deeper or wider than r's remaining levels
		case fl == "+":
			if rl != "+" {
				return false
			}
		case rl != "+" && rl != fl:
			return false
		}
		if !fmore || !rmore {
			// f ends here: r must end too, or continue only with "#".
			return !fmore && (!rmore || rrest == "#")
		}
		r, f = rrest, frest
	}
}
