package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionShowsStampedCommitAndDate(t *testing.T) {
	defer func(c, d string) { buildCommit, buildDate = c, d }(buildCommit, buildDate)
	buildCommit, buildDate = "0123456789abcdef0123", "2026-01-02T15:04:05Z"
	out := mustRun(t, "version")
	if !strings.Contains(out, "(0123456789ab, built 2026-01-02T15:04:05Z)") {
		t.Fatalf("%q", out)
	}
}

func TestVersionOfGoInstallBuilds(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/mqstream/mqstream", Version: "v1.2.3"}}
	if got := describeVersion("dev", "", "", bi); !strings.HasPrefix(got, "mqstream v1.2.3 go") {
		t.Errorf("go install @v1.2.3: %q", got)
	}
	if got := describeVersion("v2.0.0", "abc", "", bi); !strings.HasPrefix(got, "mqstream v2.0.0 (abc) go") {
		t.Errorf("stamped version wins: %q", got)
	}
	bi.Main.Version = "(devel)"
	bi.Settings = []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}}
	if got := describeVersion("dev", "", "", bi); !strings.HasPrefix(got, "mqstream dev (0123456789ab) go") {
		t.Errorf("checkout build: %q", got)
	}
}
