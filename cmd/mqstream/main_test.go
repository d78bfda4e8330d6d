package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestPrintConfigShowsEffectiveValues(t *testing.T) {
	t.Setenv("MQSTREAM_STORAGE_SYNC", "interval")
	out, err := runCmd(t, "serve", "--print-config", "--mqtt", "127.0.0.1:1999", "--data-dir", "/tmp/x", "--max-query-state", "1MiB")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"max_state_bytes: 1MiB", "tcp: 127.0.0.1:1999", "data_dir: /tmp/x", "sync: interval", "default_rule: first-level"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config output lacks %q:\n%s", want, out)
		}
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("mqtt:\n  max_payload: -1\nstorage:\n  sink: always\n"), 0o600)
	_, err := runCmd(t, "serve", "--config", path)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"storage.sink: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	_, err = runCmd(t, "serve", "--print-config", "--sync", "sometimes")
	if err == nil || !strings.Contains(err.Error(), "storage.sync") {
		t.Errorf("bad flag value: %v", err)
	}
}

func TestVersion(t *testing.T) {
	out, err := runCmd(t, "version")
	if err != nil || !strings.HasPrefix(out, "mqstream ") {
		t.Fatalf("%q %v", out, err)
	}
}
