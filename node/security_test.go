package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and client
// certificates, written to files.
type testPKI struct {
	dir              string
	caPool           *x509.CertPool
	client, stranger tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, server bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name string, der []byte, key *ecdsa.PrivateKey) {
		os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		if key != nil {
			kb, _ := x509.MarshalECPrivateKey(key)
			os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
		}
	}
	write("ca", caDER, nil)
	srvDER, srvKey := issue("127.0.0.1", true, ca, caKey)
	write("server", srvDER, srvKey)
	cliDER, cliKey := issue("device-7", false, ca, caKey)
	strDER, strKey := issue("device-7", false, nil, nil) // self-signed: not trusted
	p := &testPKI{dir: dir, caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	p.stranger = tls.Certificate{Certificate: [][]byte{strDER}, PrivateKey: strKey}
	return p
}

func (p *testPKI) path(name string) string { return filepath.Join(p.dir, name) }

// v5 connects an MQTT 5 client over conn; it returns the client or the
// connect error.
func v5(t *testing.T, conn net.Conn, id, user, password string) (*paho.Client, error) {
	t.Helper()
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err == nil && ca.ReasonCode != 0 {
		err = &connRefused{ca.ReasonCode}
	}
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

type connRefused struct{ code byte }

func (e *connRefused) Error() string { return fmt.Sprintf("connack reason 0x%02x", e.code) }

func TestAuthenticationAuthorizationAndTLS(t *testing.T) {
	pki := newPKI(t)
	users := filepath.Join(t.TempDir(), "users")
	hash, _ := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost) // fast under -race
	if err := os.WriteFile(users, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t.TempDir())
	cfg.MQTT.TLSListen = "127.0.0.1:0"
	cfg.MQTT.TLS = config.TLS{Cert: pki.path("server.crt"), Key: pki.path("server.key"), ClientCA: pki.path("ca.crt")}
	cfg.Auth = config.Auth{Anonymous: false, UsersFile: users, CertCNAsUsername: true, ACLDefault: "deny", ACL: []config.ACLRule{
		{User: "alice", Action: "all", Filter: "#", Permission: "allow"},
		{Action: "publish", Filter: "devices/%u/#", Permission: "allow"},
		{Action: "subscribe", Filter: "jobs/#", Groups: []string{"workers"}, Permission: "allow"},
	}}
	readToken, adminToken := "read-token-0123456789", "admin-token-0123456789"
	cfg.HTTP.Tokens = []config.HTTPToken{{Token: readToken, Role: "read"}, {Token: adminToken, Role: "admin"}}
	n, err := Open(cfg, testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	tlsAddr := n.Listeners()["mqtt_tls"]

	tcp := func() net.Conn {
		c, err := net.Dial("tcp", n.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dialTLS := func(cert *tls.Certificate) (net.Conn, error) {
		cfg := &tls.Config{RootCAs: pki.caPool, ServerName: "127.0.0.1"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", tlsAddr, cfg)
		if err == nil {
			err = c.Handshake()
		}
		return c, err
	}

	// Authentication.
	if _, err := v5(t, tcp(), "anon", "", ""); err == nil {
		t.Error("anonymous client connected with anonymous access off")
	}
	if _, err := v5(t, tcp(), "a1", "alice", "wrong"); err == nil {
		t.Error("wrong password accepted")
	}
	if _, err := v5(t, tcp(), "a2", "mallory", "x"); err == nil {
		t.Error("unknown user accepted")
	}
	alice, err := v5(t, tcp(), "a3", "alice", "wonderland")
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	conn, err := dialTLS(&pki.client)
	if err != nil {
		t.Fatalf("TLS with a trusted client certificate: %v", err)
	}
	device, err := v5(t, conn, "dev-7", "", "")
	if err != nil {
		t.Fatalf("device-7 by certificate: %v", err)
	}
	if conn, err := dialTLS(nil); err == nil {
		if _, err := v5(t, conn, "nocert", "", ""); err == nil {
			t.Error("TLS client without certificate or username connected")
		}
	}
	if conn, err := dialTLS(&pki.stranger); err == nil {
		if _, err := v5(t, conn, "stranger", "", ""); err == nil {
			t.Error("client with an untrusted certificate connected")
		}
	}
	if conn, err := dialTLS(nil); err == nil {
		if _, err := v5(t, conn, "a4", "alice", "wonderland"); err != nil {
			t.Errorf("alice over TLS with a password: %v", err)
		}
	}

	// Authorization: publish.
	ctx := context.Background()
	if res, err := device.Publish(ctx, &paho.Publish{Topic: "devices/device-7/temp", QoS: 1, Payload: []byte("21")}); err != nil || res.ReasonCode != 0 {
		t.Fatalf("allowed publish: %v %+v", err, res)
	}
	if res, _ := device.Publish(ctx, &paho.Publish{Topic: "devices/device-8/temp", QoS: 1, Payload: []byte("spoof")}); res == nil || res.ReasonCode != 0x87 {
		t.Fatalf("publish to another device's topic: %+v", res)
	}
	if res, err := alice.Publish(ctx, &paho.Publish{Topic: "secret/x", QoS: 1, Payload: []byte("s")}); err != nil || res.ReasonCode != 0 {
		t.Fatalf("alice publishes anywhere: %v %+v", err, res)
	}
	recs, _ := n.Store().Read("devices", 0, readAll)
	if len(recs) != 1 || string(recs[0].Payload) != "21" {
		t.Fatalf("stored %d records; a denied publish must not be stored", len(recs))
	}

	// Authorization: subscribe, $share joins.
	sa, err := device.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "$share/workers/jobs/#", QoS: 1}, {Topic: "$share/thieves/jobs/#", QoS: 1}, {Topic: "secret/#", QoS: 1}}})
	if err != nil && sa == nil {
		t.Fatal(err)
	}
	if len(sa.Reasons) != 3 || sa.Reasons[0] != 1 || sa.Reasons[1] != 0x87 || sa.Reasons[2] != 0x87 {
		t.Fatalf("SUBACK reasons %v, want [1 0x87 0x87]", sa.Reasons)
	}

	// REST tokens.
	call := func(method, path, token, body string) int {
		req, _ := http.NewRequest(method, "http://"+n.HTTPAddr()+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/v1/streams", "", "", 401},
		{"GET", "/v1/streams", "not-a-token", "", 401},
		{"GET", "/v1/streams", readToken, "", 200},
		{"GET", "/metrics", readToken, "", 200},
		{"POST", "/v1/streams", readToken, `{"name":"x"}`, 403},
		{"POST", "/v1/streams/x/records", readToken, `{"payload":1}`, 403},
		{"POST", "/v1/streams", adminToken, `{"name":"x"}`, 201},
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 200},
	} {
		if got := call(c.method, c.path, c.token, c.body); got != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
}

var readAll = streams.ReadOptions{MaxRecords: 10000}

// TestHideDenialReason: what the ACL refuses gets MQTT 5 reason 0x87 (not
// authorized) by default and 0x80 (unspecified error) with
// auth.hide_denial_reason, in SUBACK, PUBACK and PUBREC, without a reason
// string that tells; MQTT 3.1.1 answers are the same either way (SUBACK
// 0x80, a refused QoS 1 publish disconnects). Denied publishes are never
// stored.
func TestHideDenialReason(t *testing.T) {
	for _, hide := range []bool{false, true} {
		t.Run(fmt.Sprintf("hide=%v", hide), func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Auth.ACL = []config.ACLRule{
				{Action: "subscribe", Filter: "test/nosubscribe", Permission: "deny"},
				{Action: "publish", Filter: "test/nopublish", Permission: "deny"},
			}
			cfg.Auth.HideDenialReason = hide
			n := startNode(t, cfg)
			want, wantReason := byte(0x87), "not authorized"
			if hide {
				want, wantReason = 0x80, "unspecified error"
			}

			conn, err := net.Dial("tcp", n.MQTTAddr())
			if err != nil {
				t.Fatal(err)
			}
			c, err := v5(t, conn, "hide-v5", "", "")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
				{Topic: "test/nosubscribe", QoS: 2}, {Topic: "test/ok", QoS: 1}}})
			if sa == nil {
				t.Fatalf("subscribe: %v", err)
			}
			if len(sa.Reasons) != 2 || sa.Reasons[0] != want || sa.Reasons[1] != 1 {
				t.Fatalf("SUBACK reasons %v, want [0x%02x 1]", sa.Reasons, want)
			}
			for _, qos := range []byte{1, 2} {
				res, _ := c.Publish(ctx, &paho.Publish{Topic: "test/nopublish", QoS: qos, Payload: []byte("x")})
				if res == nil || res.ReasonCode != want {
					t.Fatalf("QoS %d publish refused by the ACL: %+v, want reason 0x%02x", qos, res, want)
				}
				if res.Properties == nil || res.Properties.ReasonString != wantReason {
					t.Fatalf("QoS %d refusal's reason string %+v, want %q", qos, res.Properties, wantReason)
				}
			}
			if res, err := c.Publish(ctx, &paho.Publish{Topic: "test/ok", QoS: 1, Payload: []byte("y")}); err != nil || res.ReasonCode != 0 {
				t.Fatalf("allowed publish: %v %+v", err, res)
			}
			if recs, _ := n.Store().Read("test", 0, readAll); len(recs) != 1 || string(recs[0].Payload) != "y" {
				t.Fatalf("stored %d records, want only the allowed one", len(recs))
			}

			lost := make(chan error, 1)
			v3 := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + n.MQTTAddr()).SetClientID("hide-v3").
				SetAutoReconnect(false).SetConnectRetry(false).
				SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err }))
			if tok := v3.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("MQTT 3.1.1 connect: %v", tok.Error())
			}
			defer v3.Disconnect(50)
			tok := v3.SubscribeMultiple(map[string]byte{"test/nosubscribe": 1}, nil)
			if !tok.WaitTimeout(5 * time.Second) {
				t.Fatal("MQTT 3.1.1 SUBACK did not come")
			}
			if got := tok.(*paho3.SubscribeToken).Result()["test/nosubscribe"]; got != 0x80 {
				t.Fatalf("MQTT 3.1.1 SUBACK 0x%02x, want 0x80", got)
			}
			v3.Publish("test/nopublish", 1, false, "z")
			select {
			case <-lost:
			case <-ctx.Done():
				t.Fatal("MQTT 3.1.1 client whose QoS 1 publish the ACL refused was not disconnected")
			}
		})
	}
}
