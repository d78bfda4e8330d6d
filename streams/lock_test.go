package streams

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSecondProcessOnADirectoryIsRefusedClearly: a store opened by a
// second process on a directory in use fails, saying the directory is in
// use, and the first is unaffected.
func TestSecondProcessOnADirectoryIsRefusedClearly(t *testing.T) {
	if dir := os.Getenv("MQSTREAM_LOCK_TEST_DIR"); dir != "" {
		// The second process.
		s, err := Open(Options{Dir: dir, AutoCreate: true})
		if err == nil {
			s.Close()
			os.Stdout.WriteString("opened\n")
			os.Exit(0)
		}
		os.Stdout.WriteString(err.Error() + "\n")
		os.Exit(0)
	}
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondProcessOnADirectoryIsRefusedClearly$")
	cmd.Env = append(os.Environ(), "MQSTREAM_LOCK_TEST_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "in use by another process") {
		t.Fatalf("second process: %s, want it to say the directory is in use", out)
	}
	if _, err := s.CreateStream(t.Context(), "still", Retention{}); err != nil {
		t.Fatalf("the first store after the refused second: %v", err)
	}
}
