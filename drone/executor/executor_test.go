package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/executor/supervise"
)

// The supervisor's state names are the protocol's, less the prefix.
func TestStateNames(t *testing.T) {
	for name, s := range map[string]streamv1.CommandState{
		supervise.StateRunning: streamv1.CommandState_COMMAND_STATE_RUNNING, supervise.StateExited: streamv1.CommandState_COMMAND_STATE_EXITED,
		supervise.StateFailedToStart: streamv1.CommandState_COMMAND_STATE_FAILED_TO_START, supervise.StateTimedOut: streamv1.CommandState_COMMAND_STATE_TIMED_OUT,
		supervise.StateCancelled: streamv1.CommandState_COMMAND_STATE_CANCELLED, supervise.StateLost: streamv1.CommandState_COMMAND_STATE_LOST,
	} {
		if stateName(s) != name || parseState(name) != s {
			t.Errorf("supervise state %q, protocol %v (%q)", name, s, stateName(s))
		}
	}
}

func TestMain(m *testing.M) {
	// The test binary plays the drone's parts that run as processes of
	// their own: a command's supervisor, and a drone to kill.
	if len(os.Args) > 1 && os.Args[1] == SuperviseArg {
		os.Exit(supervise.Main(os.Args[2:]))
	}
	if dir := os.Getenv("HANGAR_TEST_DRONE_DIR"); dir != "" {
		os.Exit(childDrone(dir))
	}
	goleak.VerifyTestMain(m)
}

// childDrone starts the command of $HANGAR_TEST_CMD under a supervisor,
// then waits to be killed.
func childDrone(dir string) int {
	e, err := New(Config{DataDir: dir, NodeID: "cln-1", KillGrace: 300 * time.Millisecond, Supervisor: []string{os.Args[0], SuperviseArg}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := e.Run(ctx, &streamv1.RunCommand{CommandId: "survivor", Cmd: os.Getenv("HANGAR_TEST_CMD"), TimeoutSeconds: 30}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	select {}
}

func newExec(t *testing.T, dir string) *Executor {
	t.Helper()
	e, err := New(Config{DataDir: dir, NodeID: "cln-1", KillGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func run(t *testing.T, e *Executor, req *streamv1.RunCommand) *streamv1.CommandResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.Run(ctx, req)
	if err != nil {
		t.Fatalf("Run(%s): %v", req.CommandId, err)
	}
	return res
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func TestExitCodesAndOutput(t *testing.T) {
	e := newExec(t, t.TempDir())
	for i, tc := range []struct {
		name     string
		cmd      string
		state    streamv1.CommandState
		code     int32
		output   string
		truncate bool
	}{
		{"success", "echo hello", streamv1.CommandState_COMMAND_STATE_EXITED, 0, "hello\n", false},
		{"exit code", "exit 3", streamv1.CommandState_COMMAND_STATE_EXITED, 3, "", false},
		{"stderr is captured with stdout", "echo out; echo err >&2; exit 1", streamv1.CommandState_COMMAND_STATE_EXITED, 1, "out\nerr\n", false},
		{"killed by a signal", "kill -9 $$", streamv1.CommandState_COMMAND_STATE_EXITED, 137, "", false},
		{"json argument survives quoting", `printf '%s' '{"a":"b c"}'`, streamv1.CommandState_COMMAND_STATE_EXITED, 0, `{"a":"b c"}`, false},
		{"runs in / without a root dir", "pwd", streamv1.CommandState_COMMAND_STATE_EXITED, 0, "/\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("c-%d", i)
			res := run(t, e, &streamv1.RunCommand{CommandId: id, Cmd: tc.cmd})
			if res.State != tc.state || res.ExitCode != tc.code {
				t.Fatalf("state %v exit %d, want %v exit %d (error %q)", res.State, res.ExitCode, tc.state, tc.code, res.Error)
			}
			if string(res.Output) != tc.output || res.OutputTruncated != tc.truncate {
				t.Fatalf("output %q truncated %v, want %q %v", res.Output, res.OutputTruncated, tc.output, tc.truncate)
			}
			if res.CommandId != id || res.NodeId != "cln-1" || res.StartedAt == nil || res.FinishedAt == nil {
				t.Fatalf("result misses its ids or times: %v", res)
			}
		})
	}
}

func TestOutputKeepsTheLast64KiB(t *testing.T) {
	e := newExec(t, t.TempDir())
	// 100000 numbered lines: the end must survive, the start must not.
	res := run(t, e, &streamv1.RunCommand{CommandId: "big", Cmd: "seq 1 100000"})
	if !res.OutputTruncated || len(res.Output) != MaxOutputBytes {
		t.Fatalf("output %d bytes truncated=%v, want %d and true", len(res.Output), res.OutputTruncated, MaxOutputBytes)
	}
	if !bytes.HasSuffix(res.Output, []byte("\n99999\n100000\n")) {
		t.Fatalf("output does not end with the last lines: %q", res.Output[len(res.Output)-40:])
	}
	// Exactly 64 KiB is not truncated.
	res = run(t, e, &streamv1.RunCommand{CommandId: "exact", Cmd: fmt.Sprintf("head -c %d /dev/zero", MaxOutputBytes)})
	if res.OutputTruncated || len(res.Output) != MaxOutputBytes {
		t.Fatalf("exact size: %d bytes truncated=%v", len(res.Output), res.OutputTruncated)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestTimeoutKillsTheWholeGroup(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, dir)
	pidFile := filepath.Join(dir, "grandchild.pid")
	start := time.Now()
	// The grandchild ignores nothing but would outlive the shell if only
	// the shell were killed.
	res := run(t, e, &streamv1.RunCommand{
		CommandId:      "slow",
		Cmd:            fmt.Sprintf("sleep 300 & echo $! > %s; echo started; wait", pidFile),
		TimeoutSeconds: 1,
	})
	if res.State != streamv1.CommandState_COMMAND_STATE_TIMED_OUT {
		t.Fatalf("state %v, want TIMED_OUT", res.State)
	}
	if res.ExitCode != 128+15 && res.ExitCode != 128+9 && res.ExitCode != -1 {
		t.Fatalf("exit code %d, want the signal's", res.ExitCode)
	}
	if !strings.Contains(string(res.Output), "started") {
		t.Fatalf("output before the kill was lost: %q", res.Output)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the sleep grandchild to die", func() bool { return !alive(pid) })
}

func TestTimeoutEscalatesToSIGKILL(t *testing.T) {
	e := newExec(t, t.TempDir())
	start := time.Now()
	res := run(t, e, &streamv1.RunCommand{CommandId: "stubborn", Cmd: "trap '' TERM; while :; do sleep 0.05; done", TimeoutSeconds: 1})
	if res.State != streamv1.CommandState_COMMAND_STATE_TIMED_OUT || res.ExitCode != 128+9 {
		t.Fatalf("state %v exit %d, want TIMED_OUT by SIGKILL (137)", res.State, res.ExitCode)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("kill took %v", d)
	}
}

func TestAtMostOnce(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, dir)
	marker := filepath.Join(dir, "marker")
	req := &streamv1.RunCommand{CommandId: "once", Cmd: fmt.Sprintf("sleep 0.3; echo x >> %s; echo done", marker)}

	var wg sync.WaitGroup
	results := make([]*streamv1.CommandResult, 5)
	errs := make([]error, 5)
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = e.Run(context.Background(), req)
		})
	}
	wg.Wait()
	for i, res := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if res.State != streamv1.CommandState_COMMAND_STATE_EXITED || string(res.Output) != "done\n" {
			t.Fatalf("concurrent call %d: %v", i, res)
		}
	}
	// A later repeat is answered from the record.
	again := run(t, e, req)
	if again.State != streamv1.CommandState_COMMAND_STATE_EXITED || string(again.Output) != "done\n" ||
		!again.StartedAt.AsTime().Equal(results[0].StartedAt.AsTime()) {
		t.Fatalf("repeat: %v", again)
	}
	// And so is one to a new executor on the same data dir.
	_ = e.Close()
	e2 := newExec(t, dir)
	if res := run(t, e2, req); res.State != streamv1.CommandState_COMMAND_STATE_EXITED {
		t.Fatalf("after restart: %v", res)
	}
	if n := countLines(t, marker); n != 1 {
		t.Fatalf("marker has %d lines, want 1", n)
	}
}

func TestRequestContextDoesNotKill(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, dir)
	marker := filepath.Join(dir, "marker")
	req := &streamv1.RunCommand{CommandId: "detached", Cmd: fmt.Sprintf("sleep 0.5; echo x >> %s", marker)}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, err := e.Run(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != streamv1.CommandState_COMMAND_STATE_RUNNING || res.StartedAt == nil {
		t.Fatalf("got %v, want RUNNING with a start time", res)
	}
	// A cancelled context is the same: the caller stops waiting, nothing more.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if res, _ := e.Run(cctx, req); res.State != streamv1.CommandState_COMMAND_STATE_RUNNING {
		t.Fatalf("cancelled caller: %v", res)
	}
	// The command completes and a patient caller gets its result.
	res = run(t, e, req)
	if res.State != streamv1.CommandState_COMMAND_STATE_EXITED || res.ExitCode != 0 {
		t.Fatalf("got %v, want EXITED 0", res)
	}
	if n := countLines(t, marker); n != 1 {
		t.Fatalf("marker has %d lines, want 1", n)
	}
}

func TestLostAfterRestart(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	cmd := fmt.Sprintf("echo x >> %s", marker)
	// A RUNNING record is what a drone that died mid-command leaves behind.
	if err := os.MkdirAll(filepath.Join(dir, "commands"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := supervise.WriteRecord(filepath.Join(dir, "commands"), "crashed", record{
		CommandID: "crashed", Cmd: cmd, State: "RUNNING", StartedAt: time.Now().Add(-time.Minute),
	}); err != nil {
		t.Fatal(err)
	}
	// So is a torn temp file.
	tmp := filepath.Join(dir, "commands", "x.json.tmp-123")
	if err := os.WriteFile(tmp, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}

	e := newExec(t, dir)
	res := run(t, e, &streamv1.RunCommand{CommandId: "crashed", Cmd: cmd})
	if res.State != streamv1.CommandState_COMMAND_STATE_LOST || res.Error == "" {
		t.Fatalf("got %v, want LOST with a reason", res)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("a lost command was run again")
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatal("temp file left behind")
	}
	rec, err := supervise.ReadRecord(filepath.Join(dir, "commands", "crashed.json"))
	if err != nil || rec.State != "LOST" {
		t.Fatalf("record after recovery: %+v %v", rec, err)
	}
}

func TestCloseKillsRunningCommands(t *testing.T) {
	dir := t.TempDir()
	e, err := New(Config{DataDir: dir, KillGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res, err := e.Run(ctx, &streamv1.RunCommand{CommandId: "long", Cmd: "sleep 300"}); err != nil || res.State != streamv1.CommandState_COMMAND_STATE_RUNNING {
		t.Fatalf("got %v %v", res, err)
	}
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if _, err := e.Run(context.Background(), &streamv1.RunCommand{CommandId: "late", Cmd: "true"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
	rec, err := supervise.ReadRecord(filepath.Join(dir, "commands", "long.json"))
	if err != nil || rec.State != "LOST" {
		t.Fatalf("record after Close: %+v %v", rec, err)
	}
}

func TestInvalidRequests(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, dir)
	for _, tc := range []struct {
		name string
		req  *streamv1.RunCommand
		want string
	}{
		{"empty id", &streamv1.RunCommand{Cmd: "true"}, "command_id is required"},
		{"path in id", &streamv1.RunCommand{CommandId: "../x", Cmd: "true"}, `character '/'`},
		{"dot dot", &streamv1.RunCommand{CommandId: "..", Cmd: "true"}, "not allowed"},
		{"space in id", &streamv1.RunCommand{CommandId: "a b", Cmd: "true"}, `character ' '`},
		{"long id", &streamv1.RunCommand{CommandId: strings.Repeat("a", 129), Cmd: "true"}, "at most 128"},
		{"negative timeout", &streamv1.RunCommand{CommandId: "t1", Cmd: "true", TimeoutSeconds: -1}, "timeout_seconds -1"},
		{"huge timeout", &streamv1.RunCommand{CommandId: "t2", Cmd: "true", TimeoutSeconds: 86401}, "allowed 0..86400"},
		{"empty cmd", &streamv1.RunCommand{CommandId: "t3", Cmd: " "}, "cmd is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Run(context.Background(), tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
	// Nothing was recorded for them.
	entries, _ := os.ReadDir(filepath.Join(dir, "commands"))
	if len(entries) != 0 {
		t.Fatalf("invalid requests left %d records", len(entries))
	}
	if err := ValidateCommandID(strings.Repeat("a", 128)); err != nil {
		t.Fatalf("128 characters must be allowed: %v", err)
	}
}

func TestUsers(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, dir)
	res := run(t, e, &streamv1.RunCommand{CommandId: "u1", Cmd: "true", User: "no-such-user-hangar"})
	if res.State != streamv1.CommandState_COMMAND_STATE_FAILED_TO_START || res.ExitCode != -1 || !strings.Contains(res.Error, `"no-such-user-hangar"`) {
		t.Fatalf("unknown user: %v", res)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	res = run(t, e, &streamv1.RunCommand{CommandId: "u2", Cmd: "id -u", User: me.Username})
	if res.State != streamv1.CommandState_COMMAND_STATE_EXITED || strings.TrimSpace(string(res.Output)) != me.Uid {
		t.Fatalf("own user: %v", res)
	}
	nobody, err := user.Lookup("nobody")
	if os.Getuid() != 0 || err != nil {
		t.Log("not root or no nobody user: skipping the switch-user case")
		return
	}
	res = run(t, e, &streamv1.RunCommand{CommandId: "u3", Cmd: "id -u; echo $HOME", User: "nobody"})
	want := nobody.Uid + "\n" + nobody.HomeDir + "\n"
	if res.State != streamv1.CommandState_COMMAND_STATE_EXITED || string(res.Output) != want {
		t.Fatalf("as nobody: %v, want output %q", res, want)
	}
}

func TestRootDirAndCmdLog(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	e, err := New(Config{DataDir: dir, RootDir: root})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res := run(t, e, &streamv1.RunCommand{CommandId: "ok-1", Cmd: "pwd"})
	if strings.TrimSpace(string(res.Output)) != root {
		t.Fatalf("cwd %q, want %q", res.Output, root)
	}
	run(t, e, &streamv1.RunCommand{CommandId: "bad-1", Cmd: "echo a\nexit 7"})

	b, err := os.ReadFile(filepath.Join(dir, "cmd.log"))
	if err != nil {
		t.Fatal(err)
	}
	ts := `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`
	want := regexp.MustCompile(`^` + ts + ` ok-1 \[executing\]: pwd\n` +
		ts + ` ok-1 \[successful\]\n` +
		ts + ` bad-1 \[executing\]: echo a\\nexit 7\n` +
		ts + ` bad-1 \[failed7\]\n$`)
	if !want.Match(b) {
		t.Fatalf("cmd.log:\n%s", b)
	}
}

func TestOldRecordsArePruned(t *testing.T) {
	dir := t.TempDir()
	cmdDir := filepath.Join(dir, "commands")
	if err := os.MkdirAll(cmdDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-40 * 24 * time.Hour)
	for id, finished := range map[string]time.Time{"old": old, "recent": time.Now().Add(-time.Hour)} {
		if err := supervise.WriteRecord(cmdDir, id, record{CommandID: id, Cmd: "true", State: "EXITED", StartedAt: finished, FinishedAt: finished}); err != nil {
			t.Fatal(err)
		}
	}
	newExec(t, dir)
	if _, err := os.Stat(filepath.Join(cmdDir, "old.json")); !os.IsNotExist(err) {
		t.Error("a record past the retention was kept")
	}
	if _, err := os.Stat(filepath.Join(cmdDir, "recent.json")); err != nil {
		t.Errorf("a recent record was removed: %v", err)
	}
}

func TestDaemonStartedByACommandIsLeftAlone(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, dir)
	pidFile := filepath.Join(dir, "daemon.pid")
	start := time.Now()
	// The daemon inherits the command's output and keeps writing to it.
	res := run(t, e, &streamv1.RunCommand{CommandId: "start", Cmd: fmt.Sprintf("(while :; do echo tick; sleep 0.05; done) & echo $! > %s; echo started", pidFile)})
	if res.State != streamv1.CommandState_COMMAND_STATE_EXITED || res.ExitCode != 0 || !strings.Contains(string(res.Output), "started\n") {
		t.Fatalf("result: %v", res)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the command waited %v for its daemon", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	// Still alive and writing well after the command's output was read.
	time.Sleep(300 * time.Millisecond) // the daemon must survive a while, not an event to wait for
	if !alive(pid) {
		t.Fatal("the daemon died after its command finished")
	}
}

// Cancel kills a running command's whole group and records it CANCELLED;
// a finished command keeps its result; an id never seen is recorded
// cancelled, so a request for it arriving later runs nothing.
func TestCancel(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pidFile := filepath.Join(dir, "child.pid")
	req := &streamv1.RunCommand{CommandId: "long", Cmd: fmt.Sprintf("sleep 60 & echo $! > %s; wait", pidFile)}
	short, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer scancel()
	if res, err := e.Run(short, req); err != nil || res.State != streamv1.CommandState_COMMAND_STATE_RUNNING {
		t.Fatalf("Run: %v, %v", res, err)
	}
	var child int
	waitFor(t, 10*time.Second, "the child's pid", func() bool {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return child > 0
	})
	res, err := e.Cancel(ctx, "long", "job j-1 was cancelled")
	if err != nil || res.State != streamv1.CommandState_COMMAND_STATE_CANCELLED || !strings.Contains(res.Error, "job j-1 was cancelled") {
		t.Fatalf("Cancel: %v, %v", res, err)
	}
	waitFor(t, 5*time.Second, "the command's child to be gone", func() bool { return !alive(child) })
	if again := run(t, e, req); again.State != streamv1.CommandState_COMMAND_STATE_CANCELLED {
		t.Fatalf("the cancelled id asked again: %v, want its CANCELLED record", again)
	}

	done := run(t, e, &streamv1.RunCommand{CommandId: "done", Cmd: "exit 3"})
	if res, err := e.Cancel(ctx, "done", "late"); err != nil || res.State != done.State || res.ExitCode != 3 {
		t.Fatalf("Cancel of a finished command: %v, %v; want its result kept", res, err)
	}

	marker := filepath.Join(dir, "never")
	if res, err := e.Cancel(ctx, "unseen", "job cancelled"); err != nil || res.State != streamv1.CommandState_COMMAND_STATE_CANCELLED {
		t.Fatalf("Cancel of an unseen id: %v, %v", res, err)
	}
	if res := run(t, e, &streamv1.RunCommand{CommandId: "unseen", Cmd: "touch " + marker}); res.State != streamv1.CommandState_COMMAND_STATE_CANCELLED {
		t.Fatalf("a request arriving after its cancel: %v", res)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a command cancelled before it arrived ran")
	}
	if _, err := e.Cancel(ctx, "../x", "bad"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Cancel of a bad id: %v, want ErrInvalid", err)
	}
}

// A drone killed with SIGKILL while a command runs under its supervisor:
// the command goes on, and the restarted drone reports its real exit code
// and never runs it again.
func TestSupervisedCommandSurvivesTheDrone(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	release := filepath.Join(dir, "release")
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "HANGAR_TEST_DRONE_DIR="+dir,
		fmt.Sprintf("HANGAR_TEST_CMD=echo start >> %s; while [ ! -e %s ]; do sleep 0.05; done; echo done >> %s; exit 7", marker, release, marker))
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	recPath := filepath.Join(dir, "commands", "survivor.json")
	var supervisor int
	waitFor(t, 10*time.Second, "the supervisor to take the command", func() bool {
		rec, err := supervise.ReadRecord(recPath)
		supervisor = rec.SupervisorPID
		return err == nil && supervisor != 0 && countLines(t, marker) == 1
	})
	_ = child.Process.Kill()
	_, _ = child.Process.Wait()
	if !alive(supervisor) {
		t.Fatal("the supervisor died with the drone")
	}

	e := newExec(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if res, err := e.Run(ctx, &streamv1.RunCommand{CommandId: "survivor", Cmd: "echo never"}); err != nil || res.State != streamv1.CommandState_COMMAND_STATE_RUNNING {
		t.Fatalf("while the command still runs the restarted drone answers %v, %v; want RUNNING", res, err)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res := run(t, e, &streamv1.RunCommand{CommandId: "survivor", Cmd: "echo never"})
	if res.State != streamv1.CommandState_COMMAND_STATE_EXITED || res.ExitCode != 7 {
		t.Fatalf("after the drone's restart: %v; want EXITED 7", res)
	}
	if b, _ := os.ReadFile(marker); string(b) != "start\ndone\n" {
		t.Fatalf("the command's trace is %q: it must have run once, to its end", b)
	}
	waitFor(t, 5*time.Second, "the supervisor to exit", func() bool { return !alive(supervisor) })
}

// Under a supervisor, a command still times out, is cancelled, and is
// killed (recorded LOST) when the drone closes.
func TestSupervisedTimeoutCancelAndClose(t *testing.T) {
	dir := t.TempDir()
	e, err := New(Config{DataDir: dir, NodeID: "cln-1", KillGrace: 300 * time.Millisecond, Supervisor: []string{os.Args[0], SuperviseArg}})
	if err != nil {
		t.Fatal(err)
	}
	if res := run(t, e, &streamv1.RunCommand{CommandId: "quick", Cmd: "echo hello; exit 3"}); res.State != streamv1.CommandState_COMMAND_STATE_EXITED || res.ExitCode != 3 || string(res.Output) != "hello\n" {
		t.Fatalf("quick: %v", res)
	}
	if res := run(t, e, &streamv1.RunCommand{CommandId: "slow", Cmd: "sleep 30", TimeoutSeconds: 1}); res.State != streamv1.CommandState_COMMAND_STATE_TIMED_OUT {
		t.Fatalf("slow: %v, want TIMED_OUT", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	short, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer scancel()
	if _, err := e.Run(short, &streamv1.RunCommand{CommandId: "cancelme", Cmd: "sleep 30"}); err != nil {
		t.Fatal(err)
	}
	if res, err := e.Cancel(ctx, "cancelme", "test"); err != nil || res.State != streamv1.CommandState_COMMAND_STATE_CANCELLED {
		t.Fatalf("cancel: %v, %v", res, err)
	}
	short2, scancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer scancel2()
	if _, err := e.Run(short2, &streamv1.RunCommand{CommandId: "closeme", Cmd: "sleep 30"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	rec, err := supervise.ReadRecord(filepath.Join(dir, "commands", "closeme.json"))
	if err != nil || rec.State != "LOST" {
		t.Fatalf("closeme after Close: %v, %v; want LOST", rec.State, err)
	}
}
