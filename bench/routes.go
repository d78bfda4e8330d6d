package bench

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// The routes scenario measures a broker's subscriber selection with many
// distinct subscriptions: Filters filters, half of them "<prefix><i>/+/v"
// and half "<prefix><i>/#", spread over the subscribers, and publishers
// that publish on random topics "<prefix><j>/<x>/v", each matching exactly
// one filter (j's). Each message is delivered once, as in a $share group,
// so the work per message besides the selection is the same with 10
// filters as with 100,000.

// routeLevels is the number of second-level names each filter's topics
// use (so there are Filters x routeLevels distinct topics).
const routeLevels = 4

// routePrefix is the topic pattern up to its %d: "bench/%d" -> "bench/".
func routePrefix(o Options) string {
	prefix, _, _ := strings.Cut(o.Topic, "%d")
	return prefix
}

// routeFilters gives each subscriber its share of the filters: filter i
// goes to subscriber i mod Subscribers.
func routeFilters(o Options) [][]string {
	prefix := routePrefix(o)
	out := make([][]string, o.Subscribers)
	for i := 0; i < o.Filters; i++ {
		f := prefix + strconv.Itoa(i) + "/+/v"
		if i%2 == 1 {
			f = prefix + strconv.Itoa(i) + "/#"
		}
		out[i%o.Subscribers] = append(out[i%o.Subscribers], f)
	}
	return out
}

// routeTopics lists every topic of the scenario in a random order (the
// same for every run with the same options): publishers cycle through it,
// each from its own offset.
func routeTopics(o Options) []string {
	prefix := routePrefix(o)
	topics := make([]string, 0, o.Filters*routeLevels)
	for i := 0; i < o.Filters; i++ {
		for x := 0; x < routeLevels; x++ {
			topics = append(topics, prefix+strconv.Itoa(i)+"/"+strconv.Itoa(x)+"/v")
		}
	}
	rng := rand.New(rand.NewPCG(uint64(o.Filters), 1))
	rng.Shuffle(len(topics), func(i, j int) { topics[i], topics[j] = topics[j], topics[i] })
	return topics
}
