package mqtt

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqstream/mqstream/topic"
)

// TestConformanceRetainedMatching (issue item 1, and the retained side of
// items 2 and 3): a new subscription gets the retained message of every
// topic its filter matches. '#' matches the parent level too
// [MQTT-4.7.1-2], so "foo/#" and "+/#" get "foo" and "foo/+/baz/#" gets
// "foo/bar/baz"; a filter starting with a wildcard does not match topics
// starting with '$' [MQTT-4.7.2-1], so "#" and "+/#" do not get "$foo/x".
// mochi's retained lookup misses the parent levels and returns "$foo/x".
func TestConformanceRetainedMatching(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		pub := connectV3(t, "tcp://"+tgt.addr, "pub", nil)
		for _, tp := range []string{"foo", "foo/bar/baz", "$foo/x"} {
			waitToken(t, pub.Publish(tp, 1, true, "r"), "publish retained "+tp)
		}
		cases := []struct {
			filter, marker string
			want, not      []string
		}{
			{"foo/#", "foo/mark", []string{"foo", "foo/bar/baz"}, nil},
			{"foo/+/baz/#", "foo/m/baz/mark", []string{"foo/bar/baz"}, nil},
			{"+/#", "m/x", []string{"foo", "foo/bar/baz"}, []string{"$foo/x"}},
			{"#", "mark", []string{"foo", "foo/bar/baz"}, []string{"$foo/x"}},
		}
		var gots []chan string
		for i, c := range cases {
			sub, got := collectV3(t, tgt.addr, fmt.Sprintf("sub-%d", i))
			waitToken(t, sub.Subscribe(c.filter, 1, nil), "subscribe "+c.filter)
			gots = append(gots, got)
		}
		var errs []string
		for i, c := range cases {
			waitToken(t, pub.Publish(c.marker, 1, false, "m"), "publish marker")
			before, err := untilMarker(gots[i], c.marker)
			if err != nil {
				return err
			}
			for _, w := range c.want {
				if !contains(before, w) {
					errs = append(errs, fmt.Sprintf("%s did not get the retained message on %s", c.filter, w))
				}
			}
			for _, n := range c.not {
				if contains(before, n) {
					errs = append(errs, fmt.Sprintf("%s got the retained message on %s", c.filter, n))
				}
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}, nil)
}

// TestRetainedMatchingAgainstBruteForce compares retainedMatching with
// MatchTopic over every retained topic, for random topics and filters.
func TestRetainedMatchingAgainstBruteForce(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	topics := n.broker.server.Topics
	rng := rand.New(rand.NewSource(1))
	levels := []string{"a", "b", "", "$x", "c"}
	randomTopic := func() string {
		parts := make([]string, 1+rng.Intn(4))
		for i := range parts {
			parts[i] = levels[rng.Intn(len(levels))]
		}
		return strings.Join(parts, "/")
	}
	var all []string
	for i := 0; i < 200; i++ {
		tp := randomTopic()
		if tp == "" || strings.HasPrefix(tp, "$SYS") {
			continue
		}
		topics.RetainMessage(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName: tp, Payload: []byte("x")})
		all = append(all, tp)
	}
	filterLevels := append(levels, "+", "+")
	for i := 0; i < 2000; i++ {
		parts := make([]string, 1+rng.Intn(4))
		for j := range parts {
			parts[j] = filterLevels[rng.Intn(len(filterLevels))]
		}
		if rng.Intn(2) == 0 {
			parts = append(parts, "#")
		}
		filter := strings.Join(parts, "/")
		if topic.ValidateFilter(filter) != nil {
			continue
		}
		var want, got []string
		for _, tp := range all {
			if topic.Match(filter, tp) && !slices.Contains(want, tp) {
				want = append(want, tp)
			}
		}
		for _, pk := range retainedMatching(topics, filter) {
			got = append(got, pk.TopicName)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("filter %q: got %v, want %v", filter, got, want)
		}
	}
}
