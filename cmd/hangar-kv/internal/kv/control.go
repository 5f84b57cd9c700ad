//go:build unix

package kv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hangarhq/hangar/internal/daemon"
)

// Defaults of the control commands.
const (
	DefaultStartWait = 20 * time.Second
	DefaultStopWait  = 10 * time.Second
	// killWait bounds the wait for a process to vanish after SIGKILL.
	killWait  = 5 * time.Second
	pollEvery = 50 * time.Millisecond
)

// background is the hangar-kv server its control commands run and find.
var background = daemon.Server{Tool: "hangar-kv", Subcommand: "serve"}

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
	unlock, err := background.Lock(ctx, o.PIDFile)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer unlock()

	if pid, ok := background.RunningPID(o.PIDFile); ok {
		log.Info("hangar-kv already running", "pid", pid, "pidfile", o.PIDFile)
		return nil
	}

	logf, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start: open log: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(exe, background.Subcommand, "--config", configFile)
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
	if err := daemon.WritePIDFile(o.PIDFile, pid); err != nil {
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
	unlock, err := background.Lock(ctx, o.PIDFile)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	defer unlock()

	pid, ok := background.RunningPID(o.PIDFile)
	if !ok {
		_ = os.Remove(o.PIDFile)
		log.Info("hangar-kv not running", "pidfile", o.PIDFile)
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop: signal pid %d: %w", pid, err)
	}
	if !background.WaitGone(ctx, pid, o.Wait) {
		log.Warn("hangar-kv did not stop in time, killing it", "pid", pid, "wait", o.Wait)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !background.WaitGone(ctx, pid, killWait) {
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
	unlock, err := background.Lock(ctx, o.PIDFile)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	defer unlock()

	line := " reloaded\n"
	if pid, ok := background.RunningPID(o.PIDFile); ok {
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
		// reaped: reaping alone says whether it ended. (Alive's look at
		// /proc/<pid>/cmdline can find it empty just after exec, while the
		// kernel is still setting up the new program's arguments.)
		if exited, status := daemon.Reap(pid); exited {
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

func killAndReap(pid int) {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	background.WaitGone(context.Background(), pid, killWait)
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
