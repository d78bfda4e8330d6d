package cluster

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
)

// missesToSuspect is how many pings in a row a member must miss before
// it is shown as suspect. One lost packet is not enough; at the default
// timers two misses take about two seconds, while memberlist gives a
// crashed member up as failed after five or more.
const missesToSuspect = 2

// minSuspectAfter is the least time a member's misses must span: with
// fast timers (tests), a busy machine would otherwise make members
// suspect for a few slow answers.
const minSuspectAfter = time.Second

// missesFor is how many pings in a row a member must miss at probe
// interval probe.
func missesFor(probe time.Duration) int {
	if probe <= 0 {
		return missesToSuspect
	}
	return max(missesToSuspect, int(minSuspectAfter/probe))
}

// suspicion counts, per member, the pings of this node's own that went
// unanswered in a row. memberlist v0.6 keeps its own suspicion of a
// member in a node state its API does not reach (the Node.State its
// Members returns stays alive), so the status suspect comes from these
// pings: a member gossip still calls alive that has missed
// missesToSuspect pings in a row. As memberlist's own probes do, a ping
// that gets no answer over UDP is tried again over TCP
// (Options.PingFallback), so that a member whose UDP is blocked is not
// suspect for as long as it runs.
//
// The code that places replicas, forms the cluster or joins it reads
// Member.Up, which counts a suspect as up, so that a missed ping never
// moves a replica or a leader: gossip's own failure detection decides
// that.
type suspicion struct {
	need   int            // misses in a row that make a suspect (missesFor); 0 = missesToSuspect
	mu     sync.Mutex     // guards missed
	missed map[string]int // member id -> pings missed in a row
}

// threshold is how many misses in a row make a suspect.
func (s *suspicion) threshold() int {
	if s.need > 0 {
		return s.need
	}
	return missesToSuspect
}

// record notes the outcome of a ping to id and reports whether the
// member's suspicion changed (it became suspect, or answered again).
func (s *suspicion) record(id string, answered bool) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.missed[id] >= s.threshold()
	if answered {
		delete(s.missed, id)
	} else {
		if s.missed == nil {
			s.missed = map[string]int{}
		}
		s.missed[id]++
	}
	return before != (s.missed[id] >= s.threshold())
}

// forget drops what is known of the members not in keep (those gossip no
// longer calls alive), so that one coming back starts unsuspected.
func (s *suspicion) forget(keep map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.missed {
		if !keep[id] {
			delete(s.missed, id)
		}
	}
}

// suspect reports whether id missed enough pings in a row to be suspect.
func (s *suspicion) suspect(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.missed[id] >= s.threshold()
}

// probeMembers pings every other member gossip calls alive once per
// probe interval (all at once, each waiting up to the probe timeout)
// until the membership shuts down, and fires the change feed when a
// member becomes suspect or answers again.
func (m *Membership) probeMembers() {
	defer m.wg.Done()
	tick := time.NewTicker(m.opts.Timers.Probe)
	defer tick.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-tick.C:
		}
		type target struct {
			id, rpc string
			addr    net.Addr
		}
		var targets []target
		alive := map[string]bool{}
		for _, sm := range m.serf.Members() {
			if sm.Name == m.opts.NodeID || sm.Status != serf.StatusAlive || sm.Tags[tagCluster] != m.opts.Cluster {
				continue
			}
			alive[sm.Name] = true
			targets = append(targets, target{sm.Name, sm.Tags[tagRPC], &net.UDPAddr{IP: sm.Addr, Port: int(sm.Port)}})
		}
		m.suspicion.forget(alive)
		var wg sync.WaitGroup
		changed := make(chan string, len(targets))
		for _, t := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := m.serf.Memberlist().Ping(t.id, t.addr)
				answered := err == nil || m.answersOverTCP(t.rpc)
				if m.suspicion.record(t.id, answered) {
					changed <- t.id
				}
			}()
		}
		wg.Wait()
		close(changed)
		notify := false
		for id := range changed {
			notify = true
			if m.suspicion.suspect(id) {
				m.log.Warn("member suspect: it missed its last pings", "member", id, "missed", m.suspicion.threshold())
			} else {
				m.log.Info("member answers pings again", "member", id)
			}
		}
		if notify {
			m.notify()
		}
	}
}

// answersOverTCP asks Options.PingFallback whether the member at rpc
// answers over TCP, waiting up to fallbackTimeout; false without one.
func (m *Membership) answersOverTCP(rpc string) bool {
	if m.opts.PingFallback == nil || rpc == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(m.opts.Timers.ProbeTimeout, fallbackTimeout))
	defer cancel()
	return m.opts.PingFallback(ctx, rpc)
}

// fallbackTimeout is the least a ping over TCP waits: a new connection
// costs a round trip more than a UDP ping.
const fallbackTimeout = 500 * time.Millisecond
