package auth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Options configure authentication and authorization.
type Options struct {
	// Users are the known users (nil: none).
	Users Users
	// Anonymous lets clients without a username connect.
	Anonymous bool
	// ClientID, if set, must match every client id.
	ClientID *regexp.Regexp
	// CertCNAsUsername uses a verified client certificate's common name as
	// the username (no password needed) on TLS listeners.
	CertCNAsUsername bool
	ACL              ACL
	Logger           *slog.Logger
}

// Hook is the mochi hook that authenticates clients and checks every
// publish, subscription and delivery against the ACL.
type Hook struct {
	mochi.HookBase
	opts Options
	log  *slog.Logger
}

// NewHook validates the options and returns the hook.
func NewHook(opts Options) (*Hook, error) {
	if err := opts.ACL.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Hook{opts: opts, log: opts.Logger}, nil
}

func (h *Hook) ID() string { return "mqstream-auth" }

func (h *Hook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

// OnConnectAuthenticate decides whether a client may connect.
func (h *Hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	if err := h.authenticate(cl, pk); err != nil {
		h.log.Warn("connection refused", "client", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener, "reason", err)
		return false
	}
	return true
}

var (
	errBadClientID = errors.New("client id not allowed")
	errAnonymous   = errors.New("anonymous access is off: a username is required")
	errBadPassword = errors.New("bad username or password")
)

func (h *Hook) authenticate(cl *mochi.Client, pk packets.Packet) error {
	if h.opts.ClientID != nil && !h.opts.ClientID.MatchString(cl.ID) {
		return fmt.Errorf("%w: %q does not match %s", errBadClientID, cl.ID, h.opts.ClientID)
	}
	if cn := verifiedCN(cl); cn != "" && h.opts.CertCNAsUsername {
		if len(pk.Connect.Username) > 0 && string(pk.Connect.Username) != cn {
			return fmt.Errorf("%w: username %q differs from the certificate's %q", errBadPassword, pk.Connect.Username, cn)
		}
		cl.Properties.Username = []byte(cn)
		return nil
	}
	user := string(pk.Connect.Username)
	if user == "" {
		if !h.opts.Anonymous {
			return errAnonymous
		}
		return nil
	}
	if !h.opts.Users.Check(user, pk.Connect.Password) {
		return fmt.Errorf("%w (user %q)", errBadPassword, user)
	}
	return nil
}

// verifiedCN is the common name of the client's verified certificate, if
// it connected over TLS with one.
func verifiedCN(cl *mochi.Client) string {
	tc := tlsConn(cl.Net.Conn)
	if tc == nil {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// tlsConn returns the TLS connection under the layers a listener may wrap
// it in (each offering NetConn, as tls.Conn does); nil if there is none.
func tlsConn(conn net.Conn) *tls.Conn {
	for conn != nil {
		if tc, ok := conn.(*tls.Conn); ok {
			return tc
		}
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		conn = u.NetConn()
	}
	return nil
}

// OnACLCheck decides a publish (write) or a subscription or delivery (read).
// mochi asks for reads both when a client subscribes (with the filter) and
// for every message delivered to it (with the topic); a topic is a filter
// without wildcards, so one check serves both.
func (h *Hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	act := Subscribe
	if write {
		act = Publish
	}
	ok := h.opts.ACL.Allowed(string(cl.Properties.Username), cl.ID, act, topic)
	if !ok {
		h.log.Debug("access denied", "client", cl.ID, "user", string(cl.Properties.Username), "action", act, "topic", topic)
	}
	return ok
}
