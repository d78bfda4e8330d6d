package mqtt

import (
	mochi "github.com/mochi-mqtt/server/v2"
)

// establishAborted ends what connection cl left when mochi gave up on it
// after its OnSessionEstablish hooks ran: its CONNACK, or the in-flight
// messages resent after it, could not be written (the client reset the
// connection while its claim was out, say). mochi v2.7.9 then calls
// neither OnSessionEstablished nor OnDisconnect, so what is kept from the
// one to the other is ended here: the connection's claim (else kept for
// good, and its will with it on every other node, spared by each will
// sweep as a connection being set up), the will the claim told the
// other nodes, and a session that ends with its connection (else kept in
// mochi's client list). The takeover hook, which sees every connection
// end, calls it.
func (b *Broker) establishAborted(cl *mochi.Client) {
	b.log.Debug("a connection failed before it was established", "client", cl.ID)
	if b.catchUp != nil {
		b.catchUp.OnDisconnect(cl, nil, false)
	}
	if b.claims != nil {
		if lost, stamp := b.claims.forget(cl); lost {
			// What it took over here is the winning claim's
			// (lostclaim.go).
			go b.afterLostClaim(cl, stamp)
		}
	}
	if b.peerWills != nil {
		b.peerWills.disconnected(cl)
	}
	if cur, ok := b.server.Clients.Get(cl.ID); ok && cur == cl && endsWithConnection(cl) {
		// mochi added it to its client list, and ends such a session
		// only after OnDisconnect.
		b.detachRoutes(cl)
		b.dropClient(cl)
	}
}
