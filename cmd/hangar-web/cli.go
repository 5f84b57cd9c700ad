//go:build unix

package main

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
	"syscall"
	"time"

	"github.com/hangarhq/hangar/internal/loadgen"
)

const usage = `usage:
  hangar-web serve   --addr IP:PORT --name NAME | --config FILE [--drain 10s]
  hangar-web start   --config FILE --pidfile P --log L [--wait 20s]
  hangar-web stop    --pidfile P [--wait 15s]
  hangar-web restart --config FILE --pidfile P --log L [--wait 20s]
  hangar-web check   --config FILE
  hangar-web load    --url URL [--clients 8] [--duration D]   (until stdin ends, or D; JSON counts on stdout)
`

// run is the command line: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	fs := flag.NewFlagSet("hangar-web "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr    = fs.String("addr", "", "listen address (serve)")
		name    = fs.String("name", "", "the name GET / answers (serve)")
		config  = fs.String("config", "", "config file: listen = IP:PORT, name = NAME")
		pidfile = fs.String("pidfile", "", "pidfile of the server")
		logfile = fs.String("log", "", "log file of the server")
		wait    = fs.Duration("wait", 0, "how long to wait for the server (start, stop, restart)")
		drain   = fs.Duration("drain", defaultDrain, "how long in-flight requests may take after SIGTERM (serve)")
		url     = fs.String("url", "", "the URL to load (load)")
		clients = fs.Int("clients", 8, "concurrent clients (load)")
		dur     = fs.Duration("duration", 0, "how long to load; 0: until stdin ends (load)")
	)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		cfg := Config{Listen: *addr, Name: *name}
		if *config != "" {
			if cfg, err = LoadConfig(*config); err != nil {
				break
			}
		}
		err = Serve(cfg, *drain, log)
	case "start":
		err = Start(ctx, ControlOptions{ConfigFile: *config, PIDFile: *pidfile, LogFile: *logfile, Wait: *wait, Logger: log})
	case "restart":
		err = Restart(ctx, ControlOptions{ConfigFile: *config, PIDFile: *pidfile, LogFile: *logfile, Wait: *wait, Logger: log})
	case "stop":
		err = Stop(ctx, *pidfile, *wait, log)
	case "check":
		err = Check(ctx, *config, stdout)
	case "load":
		err = load(ctx, *url, *clients, *dur, os.Stdin, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "hangar-web: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "hangar-web:", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// defaultDrain bounds how long a stopping server waits for requests in
// flight; the stop command waits a little longer before SIGKILL.
const defaultDrain = 10 * time.Second

// loadRunning is the line an unbounded load prints on stderr once on.
const loadRunning = "hangar-web load: running"

// load runs the load generator for d, or with d 0 until stdin ends (the
// caller closes it: docker exec -i), and prints its counts as JSON. An
// unbounded run says "running" on stderr once its first request is
// answered, so that a caller can wait for the load to be on before it
// changes anything (a docker exec takes a while to start).
func load(ctx context.Context, url string, clients int, d time.Duration, stdin io.Reader, stdout, stderr io.Writer) error {
	if url == "" {
		return fmt.Errorf("load: %w: --url is required", errUsage)
	}
	run := loadgen.Start(loadgen.Config{URL: url, Clients: clients})
	// A bounded run ignores stdin (docker exec -i may close it at once);
	// an unbounded one ends with it.
	var done chan struct{}
	var timeout <-chan time.Time
	if d > 0 {
		timeout = time.After(d)
	} else {
		done = make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			close(done)
		}()
		running := make(chan struct{})
		go func() {
			defer close(running)
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for run.Snapshot().Requests == 0 {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
			fmt.Fprintln(stderr, loadRunning)
		}()
		defer func() { <-running }()
	}
	select {
	case <-done:
	case <-timeout:
	case <-ctx.Done():
	}
	return json.NewEncoder(stdout).Encode(run.Stop())
}
