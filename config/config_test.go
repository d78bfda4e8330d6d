package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mqstream.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsNeedNoFile(t *testing.T) {
	cfg, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.TCP != ":1883" || cfg.MQTT.WebSocket != ":8083" || cfg.HTTP.Listen != ":8080" ||
		cfg.Node.DataDir != "./data" || cfg.Storage.Sync != "always" || !cfg.Streams.AutoCreate ||
		cfg.Streams.DefaultRule != "first-level" || cfg.MQTT.MaxPayload != 1<<20 {
		t.Fatalf("defaults: %+v", cfg)
	}
}

// TestCommitDelay: auto (the default) turns the store's controller on
// with AutoCommitDelay; a duration is a fixed delay; anything else names
// the key.
func TestCommitDelay(t *testing.T) {
	for _, c := range []struct {
		env   string
		delay time.Duration
		auto  bool
		bad   bool
	}{
		{"", AutoCommitDelay, true, false},
		{"AUTO", AutoCommitDelay, true, false},
		{"2ms", 2 * time.Millisecond, false, false},
		{"0s", 0, false, false},
		{"soon", 0, false, true},
		{"1s", 0, false, true},
		{"-1ms", 0, false, true},
	} {
		var env []string
		if c.env != "" {
			env = []string{"MQSTREAM_STORAGE_COMMIT_DELAY=" + c.env}
		}
		cfg, err := Load("", env, nil)
		if c.bad {
			if err == nil || !strings.Contains(err.Error(), "storage.commit_delay") || !strings.Contains(err.Error(), "want auto or a duration") {
				t.Errorf("%q: error %v", c.env, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.env, err)
		}
		o := cfg.StoreOptions(nil)
		if o.CommitDelay != c.delay || o.CommitDelayAuto != c.auto {
			t.Errorf("%q: delay %s auto %v, want %s %v", c.env, o.CommitDelay, o.CommitDelayAuto, c.delay, c.auto)
		}
	}
}

func TestFileEnvAndFlagsInOrder(t *testing.T) {
	path := writeFile(t, `
node:
  data_dir: /var/lib/mqstream
mqtt:
  tcp: 127.0.0.1:1884
  max_payload: 64KiB
storage:
  sync: interval
  sync_interval: 10ms
streams:
  default_rule: none
  default_retention:
    max_age: 168h
    max_bytes: 10GiB
  rules:
    - filter: sensors/+/temperature
      stream: temperatures
    - filter: jobs/#
      stream: jobs
  definitions:
    - name: temperatures
      retention:
        max_records: 1000
`)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("http", "", "")
	_ = fs.Parse([]string{"--http=127.0.0.1:9999"})
	cfg, err := Load(path, []string{"MQSTREAM_NODE_DATA_DIR=/tmp/d", "OTHER=1", "MQSTREAM_LOG_LEVEL=debug"},
		map[string]*pflag.Flag{"http.listen": fs.Lookup("http")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.DataDir != "/tmp/d" {
		t.Errorf("env did not override the file: %q", cfg.Node.DataDir)
	}
	if cfg.HTTP.Listen != "127.0.0.1:9999" || cfg.Log.Level != "debug" {
		t.Errorf("flag/env: %+v %+v", cfg.HTTP, cfg.Log)
	}
	if cfg.MQTT.TCP != "127.0.0.1:1884" || cfg.MQTT.MaxPayload != 64<<10 || cfg.MQTT.WebSocket != ":8083" {
		t.Errorf("mqtt: %+v", cfg.MQTT)
	}
	if cfg.Storage.Sync != "interval" || cfg.Storage.SyncInterval != 10*time.Millisecond {
		t.Errorf("storage: %+v", cfg.Storage)
	}
	if cfg.Streams.DefaultRetention.MaxAge != 168*time.Hour || cfg.Streams.DefaultRetention.MaxBytes != 10<<30 {
		t.Errorf("retention: %+v", cfg.Streams.DefaultRetention)
	}
	if len(cfg.Streams.Rules) != 2 || cfg.Streams.Rules[0].Stream != "temperatures" || cfg.Streams.Rules[1].Filter != "jobs/#" {
		t.Errorf("rules: %+v", cfg.Streams.Rules)
	}
	if d := cfg.StreamDefinitions(); d["temperatures"].MaxRecords != 1000 {
		t.Errorf("definitions: %+v", d)
	}
	m, err := cfg.Mapper()
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := m.StreamFor("sensors/a/temperature"); !ok || s != "temperatures" {
		t.Errorf("mapper: %q %v", s, ok)
	}
	if _, ok := m.StreamFor("other/x"); ok {
		t.Error("default_rule none still stores")
	}
	// The printed configuration loads back to the same values.
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Load(writeFile(t, string(out)), nil, nil)
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out)
	}
	if o1, _ := again.YAML(); string(o1) != string(out) {
		t.Errorf("print/load round trip differs:\n%s\n---\n%s", out, o1)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		want       []string
	}{
		{"unknown key", "mqtt:\n  tcp: :1883\n  colour: blue\n", nil, []string{"mqtt.colour"}},
		{"unknown section", "brokers: {}\n", nil, []string{"brokers"}},
		{"bad values", `
log: {level: loud}
mqtt: {tcp: "nonsense", max_payload: -5, receive_maximum: 0}
storage: {sync: sometimes, sync_interval: 0s, commit_delay: -1ms}
`, nil, []string{"log.level", "mqtt.tcp", "mqtt.max_payload", "mqtt.receive_maximum", "storage.sync:", "storage.sync_interval", "storage.commit_delay"}},
		{"bad duration", "storage: {sync_interval: soon}\n", nil, []string{"sync_interval"}},
		{"bad size", "mqtt: {max_payload: lots}\n", nil, []string{"max_payload", "invalid byte size"}},
		{"bad rules", `
streams:
  default_rule: everything
  rules:
    - {filter: "a/#/b", stream: x}
    - {filter: "ok", stream: "no/slash"}
  definitions:
    - {name: dup}
    - {name: dup}
`, nil, []string{"streams.default_rule", "streams.rules[0].filter", "streams.rules[1].stream", "streams.definitions[1].name"}},
		{"negative state limit", "queries: {max_state_bytes: -1}\n", nil, []string{"queries.max_state_bytes", "must not be negative"}},
		{"bad state limit", "queries: {max_state_bytes: plenty}\n", nil, []string{"max_state_bytes", "invalid byte size"}},
		{"bad state limit env", "", []string{"MQSTREAM_QUERIES_MAX_STATE_BYTES=-5"}, []string{"queries.max_state_bytes"}},
		{"bad gc target", "runtime: {gc_percent: sometimes}\n", nil, []string{"runtime.gc_percent", "want auto"}},
		{"zero gc target", "runtime: {gc_percent: 0}\n", nil, []string{"runtime.gc_percent"}},
		{"bad gc target env", "", []string{"MQSTREAM_RUNTIME_GC_PERCENT=-2"}, []string{"runtime.gc_percent"}},
		{"unknown env", "", []string{"MQSTREAM_MQTT_PORT=1"}, []string{"MQSTREAM_MQTT_PORT"}},
		{"bad env value", "", []string{"MQSTREAM_MQTT_MAX_CLIENTS=many"}, []string{"max_clients"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.file != "" {
				path = writeFile(t, c.file)
			}
			_, err := Load(path, c.env, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil, nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(writeFile(t, "mqtt: [unclosed\n"), nil, nil); err == nil {
		t.Error("malformed YAML accepted")
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"512": 512, "64KiB": 64 << 10, "1 MiB": 1 << 20, "2GB": 2e9, "10B": 10} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "MiB", "1.5MiB", "ten"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", bad)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String: %s", s)
	}
}

// TestGCTarget: runtime.gc_percent is "auto" by default, and a number from
// a file, the environment or a flag is a fixed target.
func TestGCTarget(t *testing.T) {
	def, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, auto, err := def.Runtime.GCPercent.Parse(); !auto || err != nil {
		t.Fatalf("default gc_percent %q: auto %v, %v", def.Runtime.GCPercent, auto, err)
	}
	for _, c := range []struct {
		file string
		env  []string
		want int
	}{
		{"runtime: {gc_percent: 100}\n", nil, 100},
		{"runtime: {gc_percent: \"250\"}\n", nil, 250},
		{"runtime: {gc_percent: -1}\n", nil, -1},
		{"", []string{"MQSTREAM_RUNTIME_GC_PERCENT=150"}, 150},
	} {
		path := ""
		if c.file != "" {
			path = writeFile(t, c.file)
		}
		cfg, err := Load(path, c.env, nil)
		if err != nil {
			t.Fatalf("%q %v: %v", c.file, c.env, err)
		}
		if n, auto, err := cfg.Runtime.GCPercent.Parse(); n != c.want || auto || err != nil {
			t.Errorf("%q %v: %d auto %v, %v; want %d", c.file, c.env, n, auto, err, c.want)
		}
		out, _ := cfg.YAML()
		if !strings.Contains(string(out), fmt.Sprintf("gc_percent: %d\n", c.want)) {
			t.Errorf("printed config:\n%s", out)
		}
	}
	for _, s := range []string{"AUTO", " auto "} {
		if _, auto, err := GCTarget(s).Parse(); !auto || err != nil {
			t.Errorf("%q: auto %v, %v", s, auto, err)
		}
	}
}

// TestExampleConfigLoads keeps the example file in the repository valid and
// equal to the embedded defaults.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../mqstream.example.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	def, _ := Load("", nil, nil)
	a, _ := cfg.YAML()
	b, _ := def.YAML()
	if string(a) != string(b) {
		t.Fatalf("the example differs from the defaults:\n%s\n---\n%s", a, b)
	}
}

// FuzzLoad feeds arbitrary configuration files to Load: it never panics, and
// whatever it accepts passes validation and prints as YAML that loads again.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"mqtt:\n  tcp: 127.0.0.1:1883\n",
		"streams:\n  rules:\n    - {filter: a/#, stream: a}\n",
		"groups:\n  declare:\n    - {name: w, filter: jobs/#, start: earliest}\n",
		"auth:\n  acl:\n    - {action: publish, filter: 'd/%c/#', permission: allow}\n",
		"storage: {sync: none}\n", "mqtt: [", "\x00", "log: {level: 5}\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, nil, nil)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load accepted an invalid config: %v", err)
		}
		out, err := cfg.YAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, nil, nil); err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, out)
		}
	})
}

// TestPahoInteropProfileLoads keeps examples/paho-interop.yaml valid and
// checks the settings the Paho suites need (docs/compatibility.md).
func TestPahoInteropProfileLoads(t *testing.T) {
	cfg, err := Load("../examples/paho-interop.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Auth
	if cfg.MQTT.KeepaliveMax != 60 || !a.HideDenialReason || a.ACLDefault != "allow" || len(a.ACL) != 1 ||
		a.ACL[0].Filter != "test/nosubscribe" || a.ACL[0].Permission != "deny" || !cfg.AuthEnabled() {
		t.Fatalf("profile: mqtt.keepalive_max %d, auth %+v", cfg.MQTT.KeepaliveMax, a)
	}
	q, err := Load("", []string{"MQSTREAM_QUERIES_MAX_STATE_BYTES=1MiB"}, nil)
	if err != nil || q.Queries.MaxStateBytes != 1<<20 {
		t.Fatalf("MQSTREAM_QUERIES_MAX_STATE_BYTES: %v %v", err, q.Queries.MaxStateBytes)
	}
	env, err := Load("", []string{"MQSTREAM_AUTH_HIDE_DENIAL_REASON=true"}, nil)
	if err != nil || !env.Auth.HideDenialReason {
		t.Fatalf("MQSTREAM_AUTH_HIDE_DENIAL_REASON: %v %v", err, env.Auth.HideDenialReason)
	}
}
