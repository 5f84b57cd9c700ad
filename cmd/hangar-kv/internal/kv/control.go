//go:build unix

package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults of the control commands.
const (
	DefaultStartWait = 20 * time.Second
	DefaultStopWait  = 10 * time.Second
	// killWait bounds the wait for a process to vanish after SIGKILL.
	killWait = 5 * time.Second
	// lockWait bounds the wait for another control command on the same
	// pidfile; a start may hold the lock for its whole --wait.
	lockWait  = 60 * time.Second
	pollEvery = 50 * time.Millisecond
)

// StartOptions configure Start.
type StartOptions struct {
	ConfigFile string
	PIDFile    string
	LogFile    string
	// Wait bounds the wait for the server to answer /healthz.
	Wait time.Duration
	// Executable is the hangar-kv binary run as `serve`; empty means this
	// process's own executable.
	Executable string
	Logger     *slog.Logger
}

// Start launches `hangar-kv serve` as a detached process (its own session,
// output appended to LogFile), records its pid in PIDFile and returns once
// the server answers /healthz. A server already running from PIDFile is
// left alone, so Start may be repeated.
func Start(ctx context.Context, o StartOptions) error {
	switch {
	case o.ConfigFile == "":
		return errors.New("start: --config is required")
	case o.PIDFile == "":
		return errors.New("start: --pidfile is required")
	case o.LogFile == "":
		return errors.New("start: --log is required")
	case o.Wait < 0:
		return fmt.Errorf("start: --wait %s: must not be negative", o.Wait)
	}
	if o.Wait == 0 {
		o.Wait = DefaultStartWait
	}
	log := loggerOr(o.Logger)
	configFile, err := filepath.Abs(o.ConfigFile)
	if err != nil {
		return fmt.Errorf("start: config path %s: %w", o.ConfigFile, err)
	}
	cfg, err := LoadConfig(configFile)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	probe, err := probeAddr(cfg.Listen)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	exe := o.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("start: find own executable: %w", err)
		}
	}
	for _, f := range []string{o.PIDFile, o.LogFile} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	unlock, err := lockPIDFile(ctx, o.PIDFile)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer unlock()

	if pid, ok := runningPID(o.PIDFile); ok {
		log.Info("hangar-kv already running", "pid", pid, "pidfile", o.PIDFile)
		return nil
	}

	logf, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start: open log: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(exe, "serve", "--config", configFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	// Its own session, so the server outlives the shell that ran start and
	// gets no signals meant for that shell's process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("start: run %s serve: %w", exe, err)
	}
	pid := cmd.Process.Pid
	// Track the child by pid from here on: the handle would keep a pidfd
	// open, and nobody waits on it when start exits right away.
	_ = cmd.Process.Release()
	if err := writePIDFile(o.PIDFile, pid); err != nil {
		killAndReap(pid)
		return fmt.Errorf("start: %w", err)
	}
	log.Info("hangar-kv starting", "pid", pid, "listen", cfg.Listen, "log", o.LogFile)

	if err := waitHealthy(ctx, probe, pid, o.Wait); err != nil {
		killAndReap(pid)
		_ = os.Remove(o.PIDFile)
		return fmt.Errorf("start: %w%s", err, logTail(o.LogFile, logStart))
	}
	log.Info("hangar-kv is up", "pid", pid, "url", "http://"+probe+"/status")
	return nil
}

// StopOptions configure Stop.
type StopOptions struct {
	PIDFile string
	// Wait bounds the wait after SIGTERM, after which SIGKILL follows.
	Wait   time.Duration
	Logger *slog.Logger
}

// Stop terminates the server recorded in PIDFile: SIGTERM, then SIGKILL
// after Wait. A server that is not running is not an error.
func Stop(ctx context.Context, o StopOptions) error {
	switch {
	case o.PIDFile == "":
		return errors.New("stop: --pidfile is required")
	case o.Wait < 0:
		return fmt.Errorf("stop: --wait %s: must not be negative", o.Wait)
	}
	if o.Wait == 0 {
		o.Wait = DefaultStopWait
	}
	log := loggerOr(o.Logger)
	unlock, err := lockPIDFile(ctx, o.PIDFile)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	defer unlock()

	pid, ok := runningPID(o.PIDFile)
	if !ok {
		_ = os.Remove(o.PIDFile)
		log.Info("hangar-kv not running", "pidfile", o.PIDFile)
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop: signal pid %d: %w", pid, err)
	}
	if !waitGone(ctx, pid, o.Wait) {
		log.Warn("hangar-kv did not stop in time, killing it", "pid", pid, "wait", o.Wait)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(ctx, pid, killWait) {
			return fmt.Errorf("stop: pid %d still running after SIGKILL", pid)
		}
	}
	_ = os.Remove(o.PIDFile)
	log.Info("hangar-kv stopped", "pid", pid)
	return nil
}

// ReloadOptions configure Reload.
type ReloadOptions struct {
	PIDFile string
	Logger  *slog.Logger
	// Now stamps the reload.log line; nil means time.Now.
	Now func() time.Time
}

// ReloadLogName is the file, beside the pidfile, where Reload records each
// run.
const ReloadLogName = "reload.log"

// Reload sends SIGHUP to the server recorded in PIDFile so it re-reads its
// config, and appends a line to reload.log beside the pidfile. A server that
// is not running is not an error: it reads the config when it starts.
func Reload(ctx context.Context, o ReloadOptions) error {
	if o.PIDFile == "" {
		return errors.New("reload: --pidfile is required")
	}
	log := loggerOr(o.Logger)
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	// confd renders (and reloads) before the init service creates the
	// directories, so make them here.
	if err := os.MkdirAll(filepath.Dir(o.PIDFile), 0o755); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	// A start in progress holds the lock until its server has installed its
	// SIGHUP handler; signalling earlier would kill it.
	unlock, err := lockPIDFile(ctx, o.PIDFile)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	defer unlock()

	line := " reloaded\n"
	if pid, ok := runningPID(o.PIDFile); ok {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("reload: signal pid %d: %w", pid, err)
		}
		log.Info("hangar-kv reloaded", "pid", pid)
	} else {
		line = " reloaded (not running)\n"
		log.Info("hangar-kv not running; it reads the config when it starts", "pidfile", o.PIDFile)
	}
	rl := filepath.Join(filepath.Dir(o.PIDFile), ReloadLogName)
	f, err := os.OpenFile(rl, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	_, werr := f.WriteString(now().Format(time.RFC3339) + line)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("reload: write %s: %w", rl, werr)
	}
	return nil
}

// waitHealthy polls /healthz until the server with pid answers, the
// process exits or wait passes.
func waitHealthy(ctx context.Context, addr string, pid int, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var lastErr error
	for {
		// The server is our unreaped child, so its pid is its own until
		// reaped: reaping alone says whether it ended. (alive's look at
		// /proc/<pid>/cmdline can find it empty just after exec, while the
		// kernel is still setting up the new program's arguments.)
		if exited, status := reap(pid); exited {
			return fmt.Errorf("hangar-kv serve (pid %d) exited (%s) before answering http://%s/healthz", pid, status, addr)
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		got, err := healthz(pctx, addr)
		pcancel()
		switch {
		case err != nil:
			lastErr = err
		case got != 0 && got != pid:
			lastErr = fmt.Errorf("http://%s/healthz is answered by another hangar-kv (pid %d)", addr, got)
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hangar-kv serve (pid %d) did not answer http://%s/healthz within %s: %v", pid, addr, wait, lastErr)
		case <-time.After(pollEvery):
		}
	}
}

// waitGone polls until pid has exited, for at most wait.
func waitGone(ctx context.Context, pid int, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		reap(pid)
		if !alive(pid) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pollEvery):
		}
	}
}

func killAndReap(pid int) {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitGone(context.Background(), pid, killWait)
}

// reap collects pid's exit status if it is our exited child; when start and
// stop run in one process (tests, embedders) nobody else would, and a
// zombie still answers kill(pid, 0).
func reap(pid int) (bool, string) {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	if err != nil || got != pid {
		return false, ""
	}
	switch {
	case ws.Exited():
		return true, fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return true, "killed by " + ws.Signal().String()
	}
	return true, "exited"
}

// alive reports whether pid is a live hangar-kv server. Where /proc exists
// it also rules out zombies and pids reused by other programs, so a stale
// pidfile never makes start skip or stop signal a stranger.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// No procfs (macOS): the signal check is all there is.
		return !errors.Is(err, os.ErrNotExist) || !procfs()
	}
	// The state follows the parenthesised command name, which may itself
	// hold spaces or parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return true
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return len(args) > 1 && args[1] == "serve"
}

func procfs() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// runningPID returns the pid in pidfile if that process is a live server.
func runningPID(pidfile string) (int, bool) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(pid) {
		return 0, false
	}
	return pid, true
}

// writePIDFile replaces pidfile atomically, so a reader never sees it half
// written.
func writePIDFile(pidfile string, pid int) error {
	tmp := pidfile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	if err := os.Rename(tmp, pidfile); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	return nil
}

// lockPIDFile serialises start, stop and reload on one pidfile through an
// flock on <pidfile>.lock, which the kernel drops if the holder dies.
func lockPIDFile(ctx context.Context, pidfile string) (func(), error) {
	name := pidfile + ".lock"
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: another hangar-kv start/stop/reload holds it: %w", name, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// logTail returns the log lines written since offset, at most the last
// few, to explain a failed start.
func logTail(logFile string, offset int64) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 4096
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > max {
		offset = fi.Size() - max
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	text := strings.TrimSpace(strings.Join(lines, "\n"))
	if text == "" {
		return ""
	}
	return "\nlast lines of " + logFile + ":\n" + text
}

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
