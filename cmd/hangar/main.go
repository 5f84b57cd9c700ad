// Command hangar is Hangar's command-line client. It starts and stops a local
// pilot (hangar up / down), pushes and inspects app packages, manages
// runtimes, creates, changes and deletes clusters, and follows their jobs
// live. Every command talks to pilot's gRPC API (api/pilotv1); `-o json`
// prints the API's responses for scripts.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], osEnv())
	stop()
	os.Exit(code)
}

// env is everything a run takes from the outside world, so tests can run the
// whole command tree in-process against their own writers and files.
type env struct {
	stdout      io.Writer
	stderr      io.Writer
	getenv      func(string) string
	executable  func() (string, error)
	lookPath    func(string) (string, error)
	userHomeDir func() (string, error)
	watch       watchConfig
}

func osEnv() env {
	return env{
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		getenv:      os.Getenv,
		executable:  os.Executable,
		lookPath:    exec.LookPath,
		userHomeDir: os.UserHomeDir,
		watch:       defaultWatchConfig(),
	}
}

// Exit statuses: 1 for any failure (including a job that failed), 130 when
// the user interrupted a command, as shells report for SIGINT.
const (
	exitOK          = 0
	exitFailure     = 1
	exitInterrupted = 130
)

// run executes one hangar invocation and returns its exit status.
func run(ctx context.Context, args []string, e env) int {
	c := newCLI(e)
	defer c.close()
	root := newRootCmd(c)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "Error: %v\n", err)
	return exitCode(err)
}

func exitCode(err error) int {
	var ie *interruptedError
	if errors.As(err, &ie) || errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	return exitFailure
}

// newLogger writes diagnostics (not command output) to w. Times are left
// out: a person reads these next to the command's own output.
func newLogger(w io.Writer, level *slog.LevelVar) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// defaultWatchConfig is how long and how fast `job watch` reconnects: long
// enough to ride out a pilot restart.
func defaultWatchConfig() watchConfig {
	return watchConfig{
		minBackoff:          250 * time.Millisecond,
		maxBackoff:          5 * time.Second,
		giveUpAfter:         2 * time.Minute,
		firstContactTimeout: 5 * time.Second,
	}
}
