package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqstream/mqstream/node"
)

// The commit and build date of a release build, stamped by scripts/image.sh:
//
//	-ldflags "-X main.buildCommit=<sha> -X main.buildDate=<RFC 3339>"
//
// Without them, version falls back to the commit the Go toolchain records
// (vcs.revision, present for builds inside a git checkout) and no date.
var buildCommit, buildDate string

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
		},
	}
}

// versionLine is "mqstream v1.2.3 (0123456789ab, built 2026-01-02T15:04:05Z)
// go1.26.8 linux/amd64"; the parenthesis is left out when nothing is known.
func versionLine() string {
	bi, _ := debug.ReadBuildInfo()
	return describeVersion(node.Version, buildCommit, buildDate, bi)
}

// describeVersion fills what the build did not stamp from the build info:
// the module version of `go install ...@v1.2.3` builds and the commit of
// builds inside a git checkout.
func describeVersion(version, rev, date string, bi *debug.BuildInfo) string {
	if bi != nil {
		if m := bi.Main.Version; version == "dev" && m != "" && m != "(devel)" {
			version = m
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && rev == "" {
				rev = s.Value
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	var about []string
	if rev != "" {
		about = append(about, rev)
	}
	if date != "" {
		about = append(about, "built "+date)
	}
	paren := ""
	if len(about) > 0 {
		paren = " (" + strings.Join(about, ", ") + ")"
	}
	return fmt.Sprintf("mqstream %s%s %s %s/%s", version, paren, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
