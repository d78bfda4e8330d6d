package rpcmux

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Faults injects network faults between the Muxes given it in their
// Options, for partition tests. Muxes are named by their addresses (Addr),
// compared as strings: the dialing side consults the table with its own
// address as the source and the address it dials as the target. A Mux
// without these Faults is not affected, and connections to or from one
// are not closed. Faults is safe for concurrent use.
type Faults struct {
	// mu guards what follows; connections are closed after it is released.
	mu struct {
		sync.Mutex
		blocked map[link]bool         // directions that drop traffic
		delay   time.Duration         // added to every dial and call
		conns   map[*muxConn]link     // open connections of our muxes, by the direction they were dialed in
		dialers map[string]dialedConn // a dialed connection's local address -> its dialer
	}
}

// link is a direction: the mux at from dialing the mux at to.
type link struct{ from, to string }

// dialedConn is what the accepting side learns of a dialed connection.
type dialedConn struct {
	from string // the dialing mux's address
	c    *muxConn
}

// NewFaults returns a table with no faults.
func NewFaults() *Faults {
	f := &Faults{}
	f.mu.blocked = make(map[link]bool)
	f.mu.conns = make(map[*muxConn]link)
	f.mu.dialers = make(map[string]dialedConn)
	return f
}

// Partition drops traffic both ways between the muxes at a and b: dials
// fail and the connections between them are closed.
func (f *Faults) Partition(a, b string) { f.block(link{a, b}, link{b, a}) }

// Block drops traffic from the mux at from to the mux at to: from's dials
// to to fail and the connections from dialed to to are closed. to can
// still reach from (and hear its answers on connections to dialed).
func (f *Faults) Block(from, to string) { f.block(link{from, to}) }

// Heal removes every fault, delay included.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.mu.blocked)
	f.mu.delay = 0
}

// Delay adds d of latency to every dial and call of our muxes (0 = none).
func (f *Faults) Delay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.delay = d
}

// block blocks links and closes their open connections.
func (f *Faults) block(links ...link) {
	var doomed []*muxConn
	f.mu.Lock()
	for _, l := range links {
		f.mu.blocked[l] = true
	}
	for c, l := range f.mu.conns {
		if f.mu.blocked[l] {
			doomed = append(doomed, c)
		}
	}
	f.mu.Unlock()
	for _, c := range doomed {
		_ = c.Close()
	}
}

// The methods below are the muxes' side; a nil *Faults has no faults.

// check fails if from may not dial to.
func (f *Faults) check(from, to string) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkLocked(link{from, to})
}

func (f *Faults) checkLocked(l link) error {
	if f.mu.blocked[l] {
		return fmt.Errorf("fault injected: %s -> %s blocked", l.from, l.to)
	}
	return nil
}

// latency is the delay to add to a dial or call.
func (f *Faults) latency() time.Duration {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.delay
}

// trackDialed registers c, dialed from the mux at from to the mux at to,
// unless that direction is blocked (a Partition since the dial started).
func (f *Faults) trackDialed(c *muxConn, from, to string) error {
	if f == nil {
		return nil
	}
	l := link{from, to}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked(l); err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	f.mu.conns[c] = l
	f.mu.dialers[c.LocalAddr().String()] = dialedConn{from: from, c: c}
	return nil
}

// trackAccepted registers c, accepted by the mux at self, if one of our
// muxes dialed it (its remote address is that dialed connection's local
// one), unless that direction is blocked.
func (f *Faults) trackAccepted(c *muxConn, self string) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.mu.dialers[c.RemoteAddr().String()]
	if !ok {
		return nil
	}
	l := link{d.from, self}
	if err := f.checkLocked(l); err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	f.mu.conns[c] = l
	return nil
}

// untrack forgets c.
func (f *Faults) untrack(c *muxConn) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mu.conns, c)
	if key := addrString(c.LocalAddr()); f.mu.dialers[key].c == c {
		delete(f.mu.dialers, key)
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
