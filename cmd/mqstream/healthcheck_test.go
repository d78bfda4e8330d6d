package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mqstream/mqstream/config"
)

func TestHealthcheckReadyNode(t *testing.T) {
	n := startTestNode(t)
	if out := mustRun(t, "healthcheck", "--url", "http://"+n.HTTPAddr()+"/readyz"); !strings.Contains(out, `"ready"`) {
		t.Fatalf("--url: %q", out)
	}
	// Without --url the address is the configuration's, env included; the
	// wildcard host is probed on loopback.
	_, port, _ := net.SplitHostPort(n.HTTPAddr())
	t.Setenv("MQSTREAM_HTTP_LISTEN", ":"+port)
	if out := mustRun(t, "healthcheck"); !strings.Contains(out, `"ready"`) {
		t.Fatalf("from env: %q", out)
	}
}

func TestHealthcheckFailsWithTheReason(t *testing.T) {
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"reason":"cluster: 1 of 3 expected members alive","status":"not ready"}`))
	}))
	defer notReady.Close()
	_, err := runCmd(t, "healthcheck", "--url", notReady.URL+"/readyz")
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "1 of 3 expected members") {
		t.Fatalf("not ready: %v", err)
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if _, err := runCmd(t, "healthcheck", "--url", "http://"+addr+"/readyz", "--timeout", "1s"); err == nil || !strings.Contains(err.Error(), "not healthy") {
		t.Fatalf("nothing listening: %v", err)
	}
	t.Setenv("MQSTREAM_HTTP_LISTEN", "")
	if _, err := runCmd(t, "healthcheck"); err == nil || !strings.Contains(err.Error(), "http.listen is empty") {
		t.Fatalf("HTTP disabled: %v", err)
	}
}

func TestReadyURL(t *testing.T) {
	for _, c := range []struct {
		http config.HTTP
		want string
	}{
		{config.HTTP{Listen: ":8080"}, "http://127.0.0.1:8080/readyz"},
		{config.HTTP{Listen: "0.0.0.0:8080"}, "http://127.0.0.1:8080/readyz"},
		{config.HTTP{Listen: "[::]:8080"}, "http://127.0.0.1:8080/readyz"},
		{config.HTTP{Listen: "10.1.2.3:9000"}, "http://10.1.2.3:9000/readyz"},
		{config.HTTP{Listen: "[::1]:8443", TLS: config.TLS{Cert: "c.pem"}}, "https://[::1]:8443/readyz"},
	} {
		if got, err := readyURL(c.http); err != nil || got != c.want {
			t.Errorf("%q: got %q %v, want %q", c.http.Listen, got, err, c.want)
		}
	}
}
