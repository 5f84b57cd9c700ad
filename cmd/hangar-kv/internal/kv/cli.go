package kv

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

const usage = `hangar-kv: a small replicated key-value HTTP service (Hangar's demo app)

usage:
  hangar-kv serve   --config FILE
  hangar-kv start   --config FILE --pidfile FILE --log FILE [--wait 20s]
  hangar-kv stop    --pidfile FILE [--wait 10s]
  hangar-kv reload  --pidfile FILE
  hangar-kv check   --config FILE [--timeout 5s]
  hangar-kv monitor --config FILE [--timeout 4s]

The config file holds "key = value" lines: role (primary|replica),
listen (ip:port), primary (ip:port, required for replicas), motd.
`

// Main runs the hangar-kv command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx := context.Background()
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("hangar-kv "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		config  = fs.String("config", "", "config `file`")
		pidfile = fs.String("pidfile", "", "pid `file`")
		logFile = fs.String("log", "", "log `file` of the server")
		wait    = fs.Duration("wait", 0, "how long to wait")
		timeout = fs.Duration("timeout", 0, "request timeout")
	)
	var err error
	switch cmd {
	case "serve":
		if err = parse(fs, rest, "config"); err == nil {
			err = serve(ctx, *config, log)
		}
	case "start":
		if err = parse(fs, rest, "config", "pidfile", "log", "wait"); err == nil {
			err = Start(ctx, StartOptions{ConfigFile: *config, PIDFile: *pidfile, LogFile: *logFile, Wait: *wait, Logger: log})
		}
	case "stop":
		if err = parse(fs, rest, "pidfile", "wait"); err == nil {
			err = Stop(ctx, StopOptions{PIDFile: *pidfile, Wait: *wait, Logger: log})
		}
	case "reload":
		if err = parse(fs, rest, "pidfile"); err == nil {
			err = Reload(ctx, ReloadOptions{PIDFile: *pidfile, Logger: log})
		}
	case "check":
		if err = parse(fs, rest, "config", "timeout"); err == nil {
			err = Check(ctx, *config, orDefault(*timeout, 5*time.Second))
		}
	case "monitor":
		if err = parse(fs, rest, "config", "timeout"); err == nil {
			var items map[string]int64
			if items, err = Monitor(ctx, *config, orDefault(*timeout, 4*time.Second)); err == nil {
				err = json.NewEncoder(stdout).Encode(items)
			}
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hangar-kv: unknown command %q (allowed: serve, start, stop, reload, check, monitor)\n\n%s", cmd, usage)
		return 2
	}
	var usageErr *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usageErr):
		fmt.Fprintf(stderr, "hangar-kv %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "hangar-kv %s: %v\n", cmd, err)
		return 1
	}
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// parse parses args and rejects flags the command does not take, so a
// misplaced flag is an error rather than silently ignored.
func parse(fs *flag.FlagSet, args []string, allowed ...string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	ok := make(map[string]bool, len(allowed))
	for _, a := range allowed {
		ok[a] = true
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if !ok[f.Name] && bad == nil {
			bad = &usageError{fmt.Sprintf("flag --%s does not apply to this command (allowed: %v)", f.Name, allowed)}
		}
	})
	return bad
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// serve runs the server in the foreground: SIGHUP reloads the config,
// SIGTERM and SIGINT shut it down gracefully.
func serve(ctx context.Context, configFile string, log *slog.Logger) error {
	if configFile == "" {
		return &usageError{"--config is required"}
	}
	// Catch SIGHUP before anything else: its default action would kill
	// the process, and `start` releases its lock (letting reloads through)
	// as soon as /healthz answers.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()

	srv, err := Open(Options{ConfigFile: configFile, Logger: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading config")
				_ = srv.Reload() // Reload logs its own failure.
			}
		}
	}()
	err = srv.Serve(ctx)
	cancel()
	wg.Wait()
	return err
}
