//go:build unix

package main

import (
	"bufio"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hangarhq/hangar/internal/procstat"
)

// A zombie whose parent has not reaped it yet (as a crashed pilot is
// until init gets to it) is not a running process.
func TestZombieIsNotAlive(t *testing.T) {
	// The backgrounded sleep's parent execs into a sleep that never
	// reaps it.
	cmd := exec.Command("sh", "-c", "sleep 0 & echo $!; exec sleep 30")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	if err := pollUntil(context.Background(), 10*time.Millisecond, 10*time.Second, func() (bool, error) {
		state, _, err := procstat.Stat(pid)
		return err == nil && state == 'Z', nil
	}); err != nil {
		t.Fatalf("no zombie to test with: %v", err)
	}
	if processAlive(pid) {
		t.Fatal("a zombie counts as a running process")
	}
	if !processAlive(cmd.Process.Pid) {
		t.Fatal("a running process does not count as running")
	}
}
