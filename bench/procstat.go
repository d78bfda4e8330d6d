package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStat is what /proc says of a broker process on this machine: its
// CPU time (user+sys), resident memory and page faults.
type procStat struct {
	cpu time.Duration
	rss int64 // bytes
	// faults counts minor page faults: first touches of fresh memory
	// (new heap, goroutine stacks, memtables), whose cost varies by
	// machine (tens of microseconds each on some virtual machines).
	faults int64
}

// clockTick is the unit of /proc/PID/stat's utime and stime (USER_HZ,
// 100 on every Linux ABI Go supports).
const clockTick = 10 * time.Millisecond

// readProc reads /proc/PID/stat and /proc/PID/status.
func readProc(pid int) (procStat, error) {
	var st procStat
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, fmt.Errorf("server process: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return st, fmt.Errorf("server process: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); minflt is field 10, utime and stime are
	// fields 14 and 15.
	if len(f) < 13 {
		return st, fmt.Errorf("server process: short /proc/%d/stat", pid)
	}
	minflt, err0 := strconv.ParseInt(f[7], 10, 64)
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		return st, fmt.Errorf("server process: malformed /proc/%d/stat", pid)
	}
	st.cpu = time.Duration(utime+stime) * clockTick
	st.faults = minflt
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("server process: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return st, fmt.Errorf("server process: VmRSS %q: %w", rest, err)
			}
			st.rss = kb << 10
			return st, nil
		}
	}
	return st, fmt.Errorf("server process: no VmRSS in /proc/%d/status", pid)
}
