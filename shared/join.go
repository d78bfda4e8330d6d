package shared

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Check tells whether a subscription to $share/<name>/<filter> can be
// served: the name and filter are valid and some mapping rule stores
// topics matching the filter. Transports refuse the subscription otherwise.
func (m *Manager) Check(name, filter string) error {
	if err := validateKey(name, filter); err != nil {
		return err
	}
	if !m.storable(filter) {
		return fmt.Errorf("%w: %q", ErrNotStorable, filter)
	}
	return nil
}

// Join adds a member to group $share/<name>/<filter>, creating the group
// (at latest, or as declared) on first use; a member with a JoinedAt
// method (one that subscribed before it could join, in cluster mode)
// creates it at that time instead of latest. leave removes the member and
// releases everything it holds at once; it is idempotent. A transport calls
// Join for every subscription it accepts (a re-SUBSCRIBE is a leave of the
// old membership and a join of the new one) and leave when the
// subscription or its connection ends.
func (m *Manager) Join(name, filter string, mem Member) (leave func(), err error) {
	k := groupKey{name, filter}
	if _, ok := m.owns(k); !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotOwner, k)
	}
	g, err := m.load(k)
	if err != nil {
		return nil, fmt.Errorf("load group %s: %w", k, err)
	}
	if g == nil {
		start, opts := m.optionsFor(k)
		if j, ok := mem.(interface{ JoinedAt() time.Time }); ok && start.Kind == StartLatest && !j.JoinedAt().IsZero() {
			// A member that subscribed a moment ago (on another node,
			// in cluster mode) gets what was published since.
			start = Position{Kind: StartTime, Time: j.JoinedAt()}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		g, err = m.create(ctx, k, start, opts, false)
		cancel()
		if err != nil && !errors.Is(err, ErrGroupExists) {
			return nil, err
		}
	}
	// The group of another epoch (ownership moved and came back, and
	// Refresh has not stopped it yet): joining it would leave the member
	// in a group about to stop. The caller tries again.
	if epoch, ok := m.owns(k); !ok || g.epoch != epoch {
		return nil, fmt.Errorf("%w: %s is changing hands", ErrNotOwner, k)
	}
	mm := g.newMember(mem)
	mem.OnRoom(g.poke)
	g.post(func() { g.join(mm) })
	return func() { g.post(func() { g.leave(mm) }) }, nil
}
