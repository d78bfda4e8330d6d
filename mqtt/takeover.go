package mqtt

import (
	"net"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Session takeover and mochi's client list.
//
// When a connection leaves and its session ends with it (MQTT 3.1.1 clean
// session, MQTT 5 session expiry 0), mochi v2.7.9 checks after OnDisconnect
// whether the connection was taken over and, if not, deletes its client id
// from the client list (Clients.Delete by id, whatever connection the id
// now names). A takeover marks the old connection taken over only after it
// has closed it, which is what wakes the old connection's goroutine; so
// that goroutine can check before the mark is set and delete after the new
// connection was added. The new connection is then missing from the list:
// messages to its subscriptions find no client and are dropped, and the
// next connection with its id does not disconnect it.
//
// Nor does mochi order two establishments of one client id: a connection
// sends its CONNACK before its OnSessionEstablished hooks run, so its
// client can connect again at once, and the next connection's
// OnSessionEstablish, takeover (mochi clears the taken-over connection's
// in-flight map, reporting every entry dropped) and OnSessionEstablished
// can all run before the first connection's OnSessionEstablished. The
// delivery hook would then attach the session to the connection already
// taken over: messages in flight there were lost (their in-flight entries
// cleared as if acknowledged) or the new connection got nothing more.
//
// takeoverHook orders them. A connection is being established from
// OnSessionEstablish until every hook's OnSessionEstablished has run (the
// takeoverSettledHook, added last) or it is gone; a connection with the
// same client id waits in OnSessionEstablish until then, so every
// establishment of an id sees the previous one complete, its session
// attached, before it takes the session over.
//
// A connection whose session ends with it leaves (OnDisconnect) only once
// every connection with its client id that was being established is
// established or gone: by then mochi has marked it taken over, if it was.
// A connection established while another with its id is leaving that way
// waits (in OnSessionEstablish) until that one is gone, its deletion
// included, before mochi takes over the session and adds it. "Gone" comes
// from the listeners: mochi is done with a connection when its establish
// function returns. A connection gone while being established is one
// mochi gave up on after OnSessionEstablish, calling neither
// OnSessionEstablished nor OnDisconnect for it: aborted is told.
type takeoverHook struct {
	mochi.HookBase

	// aborted (if set) is called with a connection mochi is done with
	// while it was being established, on its goroutine, before the
	// connections with its client id waiting for it go on.
	aborted func(*mochi.Client)

	conns sync.Map // net.Conn -> *connection, from open to its close

	mu struct {
		sync.Mutex
		// ids holds, per client id, the connection being established,
		// those leaving and how many wait; an id with none has no entry.
		ids map[string]*idConnections
	}
}

// connection is a network connection mochi serves.
type connection struct {
	gone chan struct{} // closed when mochi is done with it
	// Guarded by takeoverHook.mu:
	// id is the client id it is establishing or leaving under ("": neither).
	id string
	// cl is the client being established on it (nil: none was).
	cl *mochi.Client
	// established is closed when every hook's OnSessionEstablished has
	// run for the connection (it is in mochi's client list, its session
	// attached); made when it starts being established (OnSessionEstablish).
	established chan struct{}
}

// idConnections are one client id's connections in a takeover's way.
type idConnections struct {
	establishing map[*connection]struct{} // from OnSessionEstablish to established or gone (at most one)
	leaving      map[*connection]struct{} // past OnDisconnect, their session ending with them, until gone
	waiting      int                      // connections waiting in OnSessionEstablish
}

func newTakeoverHook() *takeoverHook {
	h := &takeoverHook{}
	h.mu.ids = map[string]*idConnections{}
	return h
}

func (h *takeoverHook) ID() string { return "mqstream-takeover" }

func (h *takeoverHook) Provides(b byte) bool {
	return b == mochi.OnSessionEstablish || b == mochi.OnDisconnect
}

// open registers a network connection before mochi reads its CONNECT; the
// function returned reports that mochi is done with it (its establish
// function returned). Listeners call both.
func (h *takeoverHook) open(conn net.Conn) (closed func()) {
	c := &connection{gone: make(chan struct{})}
	h.conns.Store(conn, c)
	return func() {
		if h.aborted != nil {
			h.mu.Lock()
			var aborted *mochi.Client
			if ids, ok := h.mu.ids[c.id]; ok {
				if _, ok := ids.establishing[c]; ok {
					aborted = c.cl
				}
			}
			h.mu.Unlock()
			if aborted != nil {
				// Still being established: the next connection with
				// its id waits until this is done.
				h.aborted(aborted)
			}
		}
		h.conns.Delete(conn)
		h.mu.Lock()
		if ids, ok := h.mu.ids[c.id]; ok {
			delete(ids.establishing, c)
			delete(ids.leaving, c)
			h.forgetLocked(c.id, ids)
		}
		h.mu.Unlock()
		close(c.gone)
	}
}

// connection returns cl's connection (nil: not from a listener, or gone).
func (h *takeoverHook) connection(cl *mochi.Client) *connection {
	if cl.Net.Conn == nil {
		return nil
	}
	if v, ok := h.conns.Load(cl.Net.Conn); ok {
		return v.(*connection)
	}
	return nil
}

// idLocked returns client id's entry, made on first use. h.mu is held.
func (h *takeoverHook) idLocked(id string) *idConnections {
	ids := h.mu.ids[id]
	if ids == nil {
		ids = &idConnections{establishing: map[*connection]struct{}{}, leaving: map[*connection]struct{}{}}
		h.mu.ids[id] = ids
	}
	return ids
}

// forgetLocked drops id's entry once it holds no connection. h.mu is held.
func (h *takeoverHook) forgetLocked(id string, ids *idConnections) {
	if len(ids.establishing) == 0 && len(ids.leaving) == 0 && ids.waiting == 0 {
		delete(h.mu.ids, id)
	}
}

// OnSessionEstablish waits until the connections with cl's id that are
// being established are established or gone, and those leaving, their
// sessions ending with them, are gone; then cl is being established until
// settled.
func (h *takeoverHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	c := h.connection(cl)
	if c == nil {
		return
	}
	h.enter(cl.ID, cl, c)
}

// exclusive waits as an establishment of client id does, then holds the
// next establishment of the id back until done is called (a connection
// here whose claim lost ends the session it took over: lostclaim.go).
func (h *takeoverHook) exclusive(id string) (done func()) {
	c := &connection{gone: make(chan struct{})}
	h.enter(id, nil, c)
	return func() {
		h.mu.Lock()
		if ids, ok := h.mu.ids[id]; ok {
			delete(ids.establishing, c)
			h.forgetLocked(id, ids)
		}
		close(c.established)
		h.mu.Unlock()
		close(c.gone)
	}
}

// enter waits until the connections with client id being established are
// established or gone, and those leaving are gone; then c (cl's, if not
// nil) is being established.
func (h *takeoverHook) enter(id string, cl *mochi.Client, c *connection) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		ids := h.idLocked(id)
		var establishing, leaving []*connection
		for o := range ids.establishing {
			if o != c {
				establishing = append(establishing, o)
			}
		}
		for o := range ids.leaving {
			leaving = append(leaving, o)
		}
		if len(establishing) == 0 && len(leaving) == 0 {
			c.id, c.cl, c.established = id, cl, make(chan struct{})
			ids.establishing[c] = struct{}{}
			return
		}
		ids.waiting++
		h.mu.Unlock()
		for _, o := range establishing {
			select {
			case <-o.established:
			case <-o.gone:
			}
		}
		for _, o := range leaving {
			<-o.gone
		}
		h.mu.Lock()
		ids.waiting--
	}
}

// settled: every hook's OnSessionEstablished has run for cl (see
// takeoverSettledHook).
func (h *takeoverHook) settled(cl *mochi.Client) {
	c := h.connection(cl)
	if c == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ids, ok := h.mu.ids[cl.ID]
	if !ok {
		return
	}
	if _, ok := ids.establishing[c]; ok {
		delete(ids.establishing, c)
		close(c.established)
		h.forgetLocked(cl.ID, ids)
	}
}

// waiting returns the number of connections with client id waiting for an
// earlier one to be established or gone.
func (h *takeoverHook) waiting(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ids, ok := h.mu.ids[id]; ok {
		return ids.waiting
	}
	return 0
}

// takeoverSettledHook tells the takeover hook that a connection is
// established; it is added after every hook that handles
// OnSessionEstablished.
type takeoverSettledHook struct {
	mochi.HookBase
	h *takeoverHook
}

func (s *takeoverSettledHook) ID() string { return "mqstream-takeover-settled" }

func (s *takeoverSettledHook) Provides(b byte) bool { return b == mochi.OnSessionEstablished }

// OnSessionEstablished: cl is in mochi's client list and every other
// hook's OnSessionEstablished has run for it.
func (s *takeoverSettledHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	s.h.settled(cl)
}

// OnDisconnect holds up the departure of a connection whose session ends
// with it until the connections with its id being established are
// established (in the client list) or gone (one of them may be taking it
// over); then it is leaving until gone.
func (h *takeoverHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	c := h.connection(cl)
	if c == nil || !expire {
		return // mochi deletes nothing
	}
	for {
		h.mu.Lock()
		ids := h.idLocked(cl.ID)
		var wait []*connection
		for o := range ids.establishing {
			if o != c {
				wait = append(wait, o)
			}
		}
		if len(wait) == 0 {
			c.id = cl.ID
			ids.leaving[c] = struct{}{}
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		for _, o := range wait {
			select {
			case <-o.established:
			case <-o.gone:
			}
		}
	}
}
