package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/mqstream/mqstream/auth"
)

// AuthEnabled reports whether MQTT access is restricted at all.
func (c Config) AuthEnabled() bool {
	a := c.Auth
	return !a.Anonymous || a.UsersFile != "" || a.ClientIDPattern != "" || len(a.ACL) > 0 ||
		a.ACLDefault != "allow" || a.CertCNAsUsername
}

// AuthOptions loads the users file and compiles the rules.
func (c Config) AuthOptions() (auth.Options, error) {
	a := c.Auth
	o := auth.Options{Anonymous: a.Anonymous, CertCNAsUsername: a.CertCNAsUsername,
		ACL: auth.ACL{DefaultAllow: a.ACLDefault == "allow"}}
	if a.UsersFile != "" {
		users, err := auth.LoadUsers(a.UsersFile)
		if err != nil {
			return o, fmt.Errorf("auth.users_file: %w", err)
		}
		o.Users = users
	}
	if a.ClientIDPattern != "" {
		re, err := regexp.Compile("^(?:" + a.ClientIDPattern + ")$")
		if err != nil {
			return o, fmt.Errorf("auth.client_id_pattern: %w", err)
		}
		o.ClientID = re
	}
	for _, r := range a.ACL {
		o.ACL.Rules = append(o.ACL.Rules, auth.Rule{User: r.User, ClientID: r.ClientID, Action: auth.Action(r.Action),
			Filter: r.Filter, Groups: r.Groups, Allow: r.Permission == "allow"})
	}
	return o, nil
}

func (c Config) validateSecurity(bad func(key, format string, args ...any)) {
	a := c.Auth
	if a.ACLDefault != "allow" && a.ACLDefault != "deny" {
		bad("auth.acl_default", "%q is not allow or deny", a.ACLDefault)
	}
	for i, r := range a.ACL {
		if r.Permission != "allow" && r.Permission != "deny" {
			bad(fmt.Sprintf("auth.acl[%d].permission", i), "%q is not allow or deny", r.Permission)
		}
	}
	if o, err := c.AuthOptions(); err != nil {
		bad("auth", "%v", err)
	} else if err := o.ACL.Validate(); err != nil {
		for _, e := range unjoin(err) {
			bad("auth", "%v", e)
		}
	}
	if !a.Anonymous && a.UsersFile == "" && !a.CertCNAsUsername {
		bad("auth.anonymous", "anonymous access is off but there is no users_file and no cert_cn_as_username: nobody could connect")
	}
	if a.CertCNAsUsername && c.MQTT.TLS.ClientCA == "" {
		bad("auth.cert_cn_as_username", "needs mqtt.tls.client_ca to verify client certificates")
	}
	for key, t := range map[string]TLS{"mqtt.tls": c.MQTT.TLS, "http.tls": c.HTTP.TLS} {
		if !t.Enabled() {
			if t.ClientCA != "" || t.RequireClientCert {
				bad(key, "client certificate settings need cert and key")
			}
			continue
		}
		if _, err := t.Config(); err != nil {
			bad(key, "%v", err)
		}
	}
	if c.MQTT.WSSListen != "" && !c.MQTT.TLS.Enabled() {
		bad("mqtt.wss_listen", "needs mqtt.tls.cert and mqtt.tls.key")
	}
	for i, tok := range c.HTTP.Tokens {
		if len(tok.Token) < 16 {
			bad(fmt.Sprintf("http.tokens[%d].token", i), "must be at least 16 characters")
		}
		switch tok.Role {
		case "read", "write", "admin": // api.ParseRole's roles
		default:
			bad(fmt.Sprintf("http.tokens[%d].role", i), "role %q is not read, write or admin", tok.Role)
		}
	}
	if c.MQTT.MaxSubscriptions < 0 {
		bad("mqtt.max_subscriptions", "must not be negative")
	}
}

// Config builds the crypto/tls configuration: the certificate, and client
// certificate verification when ClientCA is set.
func (t TLS) Config() (*tls.Config, error) {
	if t.Cert == "" || t.Key == "" {
		return nil, errors.New("cert and key must both be set")
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("loading cert %s and key %s: %w", t.Cert, t.Key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		pem, err := os.ReadFile(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca %s: no PEM certificates", t.ClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if t.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}
