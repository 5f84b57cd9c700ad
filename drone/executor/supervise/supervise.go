// Package supervise is the process side of the drone executor's supervised
// commands: the on-disk record of a command, how its process is built, and
// Main, the supervisor that runs one command in a session of its own,
// enforces its timeout and records its result. The executor
// (drone/executor) starts a supervisor per command and follows it.
//
// It imports nothing heavy (no protobuf, no gRPC) so that the small
// hangar-supervise binary built from it starts in a few milliseconds: a
// supervisor is started for every command, and a copy of the drone binary
// spent 20 ms of package init and page faults each time (issue 12).
package supervise

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hangarhq/hangar/internal/procstat"
)

// Arg is the drone's first argument that makes it a supervisor, for a
// drone shipped without hangar-supervise beside it.
const Arg = "__supervise"

// Binary is the supervisor's program, looked for beside the drone's.
const Binary = "hangar-supervise"

// Command returns the command line that supervises one command for the
// program at self (the drone's, or the sim plugin's, executable):
// hangar-supervise beside it when it is there, else self with Arg.
func Command(self string) []string {
	small := filepath.Join(filepath.Dir(self), Binary)
	if fi, err := os.Stat(small); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return []string{small}
	}
	return []string{self, Arg}
}

// Spec is what the supervisor needs besides the record: <id>.spec.json.
type Spec struct {
	Dir       string        `json:"dir"`
	Env       []string      `json:"env"`
	Timeout   time.Duration `json:"timeout"`
	KillGrace time.Duration `json:"kill_grace"`
}

// SpecPath is where the executor leaves command id's Spec.
func SpecPath(dir, id string) string { return filepath.Join(dir, id+".spec.json") }

// CancelPath is where the executor leaves the reason of a cancel before it
// signals the supervisor (SIGUSR1).
func CancelPath(dir, id string) string { return filepath.Join(dir, id+".cancel") }

// Main is the supervisor's main: args are the commands directory and the
// command id. It returns the process's exit status.
func Main(args []string) int {
	if len(args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s COMMANDS-DIR COMMAND-ID (started by the drone, one per command; or drone %s …)\n", Binary, Arg)
		return 2
	}
	if err := supervise(args[0], args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "supervise command %s: %v\n", args[1], err)
		return 1
	}
	return 0
}

func supervise(dir, id string) error {
	if err := ValidateCommandID(id); err != nil {
		return err
	}
	// Signals first: the drone may cancel as soon as it started us.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
	defer signal.Stop(sigs)

	b, err := os.ReadFile(SpecPath(dir, id))
	if err != nil {
		return err
	}
	var sp Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return fmt.Errorf("parse %s: %w", SpecPath(dir, id), err)
	}
	rec, err := ReadRecord(filepath.Join(dir, id+".json"))
	if err != nil {
		return err
	}
	if rec.State != StateRunning {
		return fmt.Errorf("the record is %s: nothing to run", rec.State)
	}
	// Who runs it, before it runs: a restarted drone tells by this pid
	// and start time whether the command is still followed.
	_, start, err := procstat.Stat(os.Getpid())
	if err != nil {
		return err
	}
	rec.SupervisorPID, rec.SupervisorStart = os.Getpid(), start
	if err := WriteRecord(dir, id, rec); err != nil {
		return err
	}

	outPath := filepath.Join(dir, id+".out")
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	var c *exec.Cmd
	if err == nil {
		c, err = Build(rec, sp.Dir, sp.Env, out)
	}
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		rec.State, rec.ExitCode, rec.Error = StateFailedToStart, -1, err.Error()
	} else {
		state, code, msg := superviseWait(c, sp, sigs, dir, id)
		rec.State, rec.ExitCode, rec.Error = state, code, msg
	}
	if out != nil {
		_ = out.Close()
		var terr error
		if rec.Output, rec.OutputTruncated, terr = ReadTail(outPath, MaxOutputBytes); terr != nil {
			rec.Error = joinMsg(rec.Error, "output unreadable: "+terr.Error())
		}
		_ = os.Remove(outPath)
	}
	rec.FinishedAt = time.Now().UTC()
	return WriteRecord(dir, id, rec)
}

func joinMsg(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// superviseWait waits for the command, killing its group at the timeout,
// on a cancel (SIGUSR1) or when the drone stops (SIGTERM).
func superviseWait(c *exec.Cmd, sp Spec, sigs <-chan os.Signal, dir, id string) (string, int32, string) {
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait() }()
	timer := time.NewTimer(sp.Timeout)
	defer timer.Stop()
	state := StateTimedOut
	msg := fmt.Sprintf("killed at its timeout of %v", sp.Timeout)
	select {
	case <-waitErr:
		return StateExited, ExitCode(c.ProcessState), ""
	case <-timer.C:
	case s := <-sigs:
		if s == syscall.SIGUSR1 {
			reason, _ := os.ReadFile(CancelPath(dir, id))
			state, msg = StateCancelled, "cancelled: "+string(reason)
		} else {
			state, msg = StateLost, "killed because the drone stopped; it was not run again"
		}
	}
	KillGroup(c.Process.Pid, waitErr, sp.KillGrace)
	return state, ExitCode(c.ProcessState), msg
}
