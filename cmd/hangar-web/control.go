//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hangarhq/hangar/internal/daemon"
)

const (
	defaultStartWait = 20 * time.Second
	// defaultStopWait is the drain plus a margin: SIGKILL only for a
	// server that did not finish draining.
	defaultStopWait = defaultDrain + 5*time.Second
	pollEvery       = 50 * time.Millisecond
)

// background is the hangar-web server its control commands run and find.
var background = daemon.Server{Tool: "hangar-web", Subcommand: "serve"}

// ControlOptions configure Start and Restart.
type ControlOptions struct {
	ConfigFile, PIDFile, LogFile string
	// Wait bounds the wait for the new server to answer /healthz.
	Wait   time.Duration
	Logger *slog.Logger
}

func (o *ControlOptions) check(cmd string) (Config, error) {
	if o.ConfigFile == "" || o.PIDFile == "" || o.LogFile == "" {
		return Config{}, fmt.Errorf("%s: %w: --config, --pidfile and --log are required", cmd, errUsage)
	}
	if o.Wait <= 0 {
		o.Wait = defaultStartWait
	}
	abs, err := filepath.Abs(o.ConfigFile)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", cmd, err)
	}
	o.ConfigFile = abs
	cfg, err := LoadConfig(abs)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", cmd, err)
	}
	for _, f := range []string{o.PIDFile, o.LogFile} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return Config{}, fmt.Errorf("%s: %w", cmd, err)
		}
	}
	return cfg, nil
}

// Start runs `hangar-web serve` detached and returns once it answers
// /healthz. A server already running from the pidfile is left alone.
func Start(ctx context.Context, o ControlOptions) error {
	cfg, err := o.check("start")
	if err != nil {
		return err
	}
	unlock, err := background.Lock(ctx, o.PIDFile)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer unlock()
	if pid, ok := background.RunningPID(o.PIDFile); ok {
		o.Logger.Info("hangar-web already running", "pid", pid)
		return nil
	}
	pid, err := spawn(ctx, o, cfg)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	o.Logger.Info("hangar-web is up", "pid", pid, "listen", cfg.Listen)
	return nil
}

// Restart replaces the running server without refusing a connection: the
// new server binds the same port beside the old one (SO_REUSEPORT), and
// once it answers, the old one stops taking connections and drains. With
// no server running it starts one.
func Restart(ctx context.Context, o ControlOptions) error {
	cfg, err := o.check("restart")
	if err != nil {
		return err
	}
	unlock, err := background.Lock(ctx, o.PIDFile)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	defer unlock()
	old, running := background.RunningPID(o.PIDFile)
	pid, err := spawn(ctx, o, cfg)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if running {
		if err := terminate(ctx, old, defaultStopWait); err != nil {
			return fmt.Errorf("restart: the old server: %w", err)
		}
	}
	o.Logger.Info("hangar-web restarted", "pid", pid, "old", old)
	return nil
}

// spawn starts a server, waits until that very process answers /healthz,
// and records it in the pidfile.
func spawn(ctx context.Context, o ControlOptions, cfg Config) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	logf, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log: %w", err)
	}
	cmd := exec.Command(exe, background.Subcommand, "--config", o.ConfigFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	// Its own session: it outlives the command that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return 0, fmt.Errorf("run %s serve: %w", exe, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := waitHealthy(ctx, cfg.Listen, pid, o.Wait); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		background.WaitGone(ctx, pid, 5*time.Second)
		return 0, err
	}
	if err := daemon.WritePIDFile(o.PIDFile, pid); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return 0, err
	}
	return pid, nil
}

// waitHealthy polls /healthz until the server with pid answers. Beside
// an old server on the same port the kernel spreads connections over
// both, so the poll goes on until one lands on the new process.
func waitHealthy(ctx context.Context, addr string, pid int, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	for {
		if exited, status := daemon.Reap(pid); exited {
			return fmt.Errorf("hangar-web serve (pid %d) exited (%s) before answering http://%s/healthz", pid, status, addr)
		}
		got, err := healthz(ctx, c, addr)
		switch {
		case err != nil:
			last = err
		case got == pid:
			return nil
		default:
			last = fmt.Errorf("answered by pid %d", got)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hangar-web serve (pid %d) did not answer http://%s/healthz within %s: %v", pid, addr, wait, last)
		case <-time.After(pollEvery):
		}
	}
}

// healthz asks addr's /healthz and returns the pid that answered.
func healthz(ctx context.Context, c *http.Client, addr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("http://%s/healthz: %s", addr, resp.Status)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(string(b)), "ok "))
	if err != nil {
		return 0, fmt.Errorf("http://%s/healthz answered %q", addr, b)
	}
	return pid, nil
}

// Check exits 0 when the configured server answers /healthz: the
// package's health check.
func Check(ctx context.Context, configFile string, stdout io.Writer) error {
	cfg, err := LoadConfig(configFile)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pid, err := healthz(ctx, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, cfg.Listen)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	fmt.Fprintf(stdout, "ok: %s answered by pid %d\n", cfg.Listen, pid)
	return nil
}

// Stop sends SIGTERM to the server of the pidfile and waits while it
// drains; SIGKILL after wait. A server not running is not an error.
func Stop(ctx context.Context, pidfile string, wait time.Duration, log *slog.Logger) error {
	if pidfile == "" {
		return fmt.Errorf("stop: %w: --pidfile is required", errUsage)
	}
	if wait <= 0 {
		wait = defaultStopWait
	}
	unlock, err := background.Lock(ctx, pidfile)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	defer unlock()
	pid, ok := background.RunningPID(pidfile)
	if !ok {
		_ = os.Remove(pidfile)
		log.Info("hangar-web not running", "pidfile", pidfile)
		return nil
	}
	if err := terminate(ctx, pid, wait); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	_ = os.Remove(pidfile)
	log.Info("hangar-web stopped", "pid", pid)
	return nil
}

// terminate sends SIGTERM, waits for pid to exit, and kills it after wait.
func terminate(ctx context.Context, pid int, wait time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	if background.WaitGone(ctx, pid, wait) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !background.WaitGone(ctx, pid, 5*time.Second) {
		return fmt.Errorf("pid %d still running after SIGKILL", pid)
	}
	return nil
}
