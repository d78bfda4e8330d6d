package config

import (
	"fmt"
	"time"

	"github.com/mqstream/mqstream/shared"
)

func defaultGroups() Groups {
	d := shared.DefaultGroupOptions()
	return Groups{
		Strategy:       string(d.Strategy),
		AckTimeout:     d.AckTimeout,
		MaxDeliveries:  d.MaxDeliveries,
		DeadLetter:     d.DeadLetter,
		Window:         d.Window,
		MaxWindow:      d.MaxWindow,
		ReadAhead:      d.ReadAhead,
		MaxUnackedSpan: d.MaxUnackedSpan,
		FlushInterval:  100 * time.Millisecond,
	}
}

// GroupDefaults returns the options of groups that declare nothing else.
func (c Config) GroupDefaults() shared.GroupOptions {
	g := c.Groups
	strategy, _ := shared.ParseStrategy(g.Strategy)
	return shared.GroupOptions{
		Strategy:       strategy,
		AckTimeout:     g.AckTimeout,
		MaxDeliveries:  g.MaxDeliveries,
		DeadLetter:     g.DeadLetter,
		Window:         g.Window,
		MaxWindow:      g.MaxWindow,
		ReadAhead:      g.ReadAhead,
		MaxUnackedSpan: g.MaxUnackedSpan,
	}
}

// GroupDeclarations returns the declared groups with their options.
func (c Config) GroupDeclarations() ([]shared.Declaration, error) {
	var out []shared.Declaration
	for i, d := range c.Groups.Declare {
		key := fmt.Sprintf("groups.declare[%d]", i)
		start, err := shared.ParsePosition(d.Start)
		if err != nil {
			return nil, fmt.Errorf("%s.start: %w", key, err)
		}
		o := c.GroupDefaults()
		if d.Strategy != "" {
			if o.Strategy, err = shared.ParseStrategy(d.Strategy); err != nil {
				return nil, fmt.Errorf("%s.strategy: %w", key, err)
			}
		}
		if d.AckTimeout != nil {
			o.AckTimeout = *d.AckTimeout
		}
		if d.MaxDeliveries != nil {
			o.MaxDeliveries = *d.MaxDeliveries
		}
		if d.DeadLetter != "" {
			o.DeadLetter = d.DeadLetter
		}
		if d.Window != nil {
			o.Window = *d.Window
			o.MaxWindow = max(o.MaxWindow, o.Window)
		}
		if err := o.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		out = append(out, shared.Declaration{Name: d.Name, Filter: d.Filter, Start: start, Options: o})
	}
	return out, nil
}
