// Package procstat reads a process's state and start time from /proc, so a
// process can be told apart from a later one that reuses its pid: a record
// of (pid, start time) names one process for good.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// Stat reads a process's state letter and start time (clock ticks after
// boot, field 22) from /proc/<pid>/stat.
func Stat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	state, start, err = parse(b)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return state, start, nil
}

func parse(b []byte) (state byte, start uint64, err error) {
	// The command name (field 2) is in parentheses and may itself contain
	// spaces and parentheses; the fields after the last ')' are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("no ')' after the command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("%d fields after the command name, want at least 20", len(f))
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("start time: %w", err)
	}
	return f[0][0], start, nil
}

// Alive reports whether pid is still the process that started at start, and
// not a zombie (dead, waiting to be reaped).
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, s, err := Stat(pid)
	return err == nil && s == start && st != 'Z' && st != 'X'
}
