package auth

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

func TestFilterCovers(t *testing.T) {
	cases := []struct {
		rule, filter string
		want         bool
	}{
		{"#", "a/b", true},
		{"a/#", "a", true},
		{"a/#", "a/+/c", true},
		{"a/#", "b/#", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/b", "a/+", false},
		{"a/+/c", "a/b/c", true},
		{"a/+", "a/b/c", false},
		{"a", "a", true},
		{"a", "a/#", false},
		{"devices/d1/#", "devices/d1/temp", true},
		{"devices/d1/#", "devices/#", false},
	}
	for _, c := range cases {
		if got := FilterCovers(c.rule, c.filter); got != c.want {
			t.Errorf("FilterCovers(%q, %q) = %v, want %v", c.rule, c.filter, got, c.want)
		}
	}
}

func TestACLFirstMatchWins(t *testing.T) {
	acl := ACL{Rules: []Rule{
		{User: "admin", Action: All, Filter: "#", Allow: true},
		{Action: Publish, Filter: "devices/%c/#", Allow: true},
		{Action: Subscribe, Filter: "devices/%u/cmd/#", Allow: true},
		{Action: Subscribe, Filter: "jobs/#", Groups: []string{"workers"}, Allow: true},
		{Action: All, Filter: "secret/#", Allow: false},
		{User: "?*", Action: Subscribe, Filter: "public/#", Allow: true},
	}}
	if err := acl.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		user, client string
		act          Action
		topic        string
		want         bool
	}{
		{"admin", "x", Publish, "secret/a", true},
		{"bob", "d1", Publish, "devices/d1/temp", true},
		{"bob", "d1", Publish, "devices/d2/temp", false},
		{"bob", "d1", Subscribe, "devices/bob/cmd/#", true},
		{"bob", "d1", Subscribe, "devices/#", false},
		{"bob", "d1", Subscribe, "$share/workers/jobs/#", true},
		{"bob", "d1", Subscribe, "$share/thieves/jobs/#", false},
		{"bob", "d1", Subscribe, "jobs/#", true}, // groups restrict only $share subscriptions
		{"bob", "d1", Subscribe, "secret/x", false},
		{"", "anon", Subscribe, "public/x", false}, // "?*" needs a username
		{"bob", "d1", Subscribe, "public/x", true},
		{"a/#", "d1", Subscribe, "devices/a/#/cmd/x", false}, // %u with special characters never matches
		{"", "", Publish, "devices//x", false},
	}
	for _, c := range cases {
		if got := acl.Allowed(c.user, c.client, c.act, c.topic); got != c.want {
			t.Errorf("Allowed(%q, %q, %s, %q) = %v, want %v", c.user, c.client, c.act, c.topic, got, c.want)
		}
	}
	if !(ACL{DefaultAllow: true}).Allowed("x", "y", Publish, "z") || (ACL{}).Allowed("x", "y", Publish, "z") {
		t.Error("default decision ignored")
	}
}

func TestACLValidate(t *testing.T) {
	err := ACL{Rules: []Rule{
		{Action: "read", Filter: "a"},
		{Action: Publish, Filter: "a/#/b"},
		{Action: Publish, Filter: "x", User: "[oops"},
		{Action: Subscribe, Filter: "$share/g/x"},
	}}.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"acl[0].action", "acl[1].filter", "acl[2]: bad pattern", "acl[3].filter"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := setUser(path, "alice", "s3cret", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := setUser(path, "bob", "hunter2", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := setUser(path, "alice", "changed", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	users, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || !users.Check("alice", []byte("changed")) || users.Check("alice", []byte("s3cret")) ||
		!users.Check("bob", []byte("hunter2")) || users.Check("carol", []byte("x")) {
		t.Fatalf("users %v", users)
	}
	hash := "$2a$10$KK0qKaz27VFONC3ErmotFuI1tiYYX2o.ceLZqZzpG.clx3msasEGq"
	for bad, where := range map[string]string{"nohash\n": "f:3", "a:notbcrypt\n": "f:3", "a:" + hash + "\na:" + hash + "\n": "f:4: user \"a\" appears twice"} {
		if _, err := ParseUsers([]byte("# comment\n\n"+bad), "f"); err == nil || !strings.Contains(err.Error(), where) {
			t.Errorf("%q: %v, want %s", bad, err, where)
		}
	}
	if err := setUser(path, "x:y", "p", bcrypt.MinCost); err == nil {
		t.Error("username with ':' accepted")
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("empty password hashed")
	}
}

func TestHookAuthenticate(t *testing.T) {
	users := Users{}
	h, _ := hashPassword("pw", bcrypt.MinCost)
	users["alice"] = []byte(h)
	hook, err := NewHook(Options{Users: users, Anonymous: false, ClientID: regexp.MustCompile(`^dev-[0-9]+$`)})
	if err != nil {
		t.Fatal(err)
	}
	try := func(id, user, pw string) bool {
		cl := &mochi.Client{ID: id}
		var pk packets.Packet
		pk.Connect.Username, pk.Connect.Password = []byte(user), []byte(pw)
		return hook.OnConnectAuthenticate(cl, pk)
	}
	if !try("dev-1", "alice", "pw") || try("laptop", "alice", "pw") || try("dev-1", "alice", "nope") || try("dev-1", "", "") {
		t.Fatal("client id pattern, password or anonymous check wrong")
	}
	open, _ := NewHook(Options{Anonymous: true})
	if !open.OnConnectAuthenticate(&mochi.Client{ID: "x"}, packets.Packet{}) {
		t.Fatal("anonymous refused with anonymous access on")
	}
	if _, err := NewHook(Options{ACL: ACL{Rules: []Rule{{Action: "nope", Filter: "x"}}}}); err == nil {
		t.Fatal("invalid ACL accepted")
	}
}
