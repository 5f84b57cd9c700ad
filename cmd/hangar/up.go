package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/pilotv1"
)

type upOptions struct {
	dataDir    string
	listen     string
	httpListen string
	timeout    time.Duration
}

func newUpCmd(c *cli) *cobra.Command {
	o := upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start pilot on this machine, with the local runtime",
		Long: `Start pilot, Hangar's hub, on this machine, and make sure the "local"
runtime exists, so clusters can be deployed here at once (the local provider
runs each instance as a process with its own 127.x.y.z address).

If a pilot already answers at --listen, up leaves it alone. Otherwise it
starts the pilot binary (found next to the hangar executable, then on PATH)
in the background, detached from this terminal: its data goes to
DATA-DIR/pilot, its log is appended to DATA-DIR/pilot.log and its process id
is written to DATA-DIR/pilot.pid, which 'hangar down' uses to stop it. up
waits until pilot answers (at most --timeout); if pilot exits instead, up
prints the end of its log.

up is safe to run again: it only starts what is missing.`,
		Example: `  # Start pilot with the defaults (data in ~/.hangar, gRPC on 127.0.0.1:7400)
  hangar up

  # Keep the data elsewhere and serve on other ports
  hangar up --data-dir /srv/hangar --listen 127.0.0.1:8400 --http-listen 127.0.0.1:8401
  export HANGAR_PILOT=127.0.0.1:8400

  # Stop it again
  hangar down`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.up(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "", "folder for pilot's data, log and pid file (default $HOME/.hangar)")
	f.StringVar(&o.listen, "listen", defaultPilotAddr, "address for pilot's gRPC API")
	f.StringVar(&o.httpListen, "http-listen", "127.0.0.1:7401", "address for pilot's REST API and dashboard")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for a new pilot to answer")
	return cmd
}

func (c *cli) up(ctx context.Context, o upOptions) error {
	dataDir, err := c.dataDir(o.dataDir)
	if err != nil {
		return err
	}
	addr, err := dialableAddr("--listen", o.listen)
	if err != nil {
		return err
	}
	if _, err := dialableAddr("--http-listen", o.httpListen); err != nil {
		return err
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive, e.g. 30s", o.timeout)
	}
	// Retry connecting quickly: gRPC's default backoff (1s and growing)
	// would let a pilot that is already up wait unnoticed.
	conn, err := dialPilot(addr, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
		MinConnectTimeout: 2 * time.Second,
	}))
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := newPilotClients(conn)

	started := false
	pid := 0
	if pilotAnswers(ctx, cl) {
		fmt.Fprintf(c.stdout, "pilot is already running at %s.\n", addr)
	} else {
		pid, err = c.startPilot(ctx, cl, dataDir, addr, o)
		if err != nil {
			return err
		}
		started = true
	}

	// Say where pilot runs before anything else can fail, so a failure
	// below does not leave an unexplained pilot behind.
	w := c.stdout
	if started {
		fmt.Fprintf(w, "pilot started (pid %d).\n", pid)
	}
	fmt.Fprintf(w, "  gRPC API:  %s\n", addr)
	if started {
		fmt.Fprintf(w, "  REST API:  http://%s\n", o.httpListen)
		fmt.Fprintf(w, "  data:      %s\n", filepath.Join(dataDir, "pilot"))
		fmt.Fprintf(w, "  log:       %s\n", logPath(dataDir))
	}

	created, err := ensureLocalRuntime(ctx, cl)
	if err != nil {
		return rpcError(addr, "create the local runtime", err, nil)
	}
	if created {
		fmt.Fprintln(w, `Runtime "local" created (provider local): clusters can run on this machine.`)
	} else {
		fmt.Fprintln(w, `Runtime "local" is ready.`)
	}
	fmt.Fprintln(w, "\nNext steps:")
	if addr != c.pilotAddr {
		fmt.Fprintf(w, "  export %s=%s                 # point hangar at this pilot\n", envPilotAddr, addr)
	}
	fmt.Fprintln(w, "  hangar app push ./examples/<app>        # store an app package")
	fmt.Fprintln(w, "  hangar cluster create <app> --wait      # deploy it on this machine")
	if started {
		down := "hangar down"
		if o.dataDir != "" {
			down += " --data-dir " + dataDir
		}
		fmt.Fprintf(w, "  %-39s # stop pilot\n", down)
	}
	return nil
}

// pilotAnswers reports whether a pilot serves its API on cl's connection.
func pilotAnswers(ctx context.Context, cl *pilotClients) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := cl.runtimes.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
	return err == nil
}

// ensureLocalRuntime creates the "local" runtime unless it exists, and says
// whether it did.
func ensureLocalRuntime(ctx context.Context, cl *pilotClients) (bool, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	_, err := cl.runtimes.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "local", Provider: "local", Zone: "local"})
	if status.Code(err) == codes.AlreadyExists {
		return false, nil
	}
	return err == nil, err
}

// startPilot starts a detached pilot and waits until it answers.
func (c *cli) startPilot(ctx context.Context, cl *pilotClients, dataDir, addr string, o upOptions) (int, error) {
	pidFile, logFile := pidPath(dataDir), logPath(dataDir)
	if pid, err := readPIDFile(pidFile); err == nil && processAlive(pid) && isPilotProcess(pid) {
		return 0, fmt.Errorf("the pilot started from %s (pid %d) runs but does not answer at %s: if it is still starting, run `hangar up` again in a moment; if it listens elsewhere, pass that address with --listen; or stop it with `hangar down` and see %s",
			dataDir, pid, addr, logFile)
	}
	bin, err := findPilotBinary(c.executable, c.lookPath)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "pilot"), 0o700); err != nil {
		return 0, fmt.Errorf("create the data folder: %w", err)
	}
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open pilot's log: %w", err)
	}
	defer log.Close()
	logStart, err := log.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("open pilot's log: %w", err)
	}
	args := []string{
		"--data-dir", filepath.Join(dataDir, "pilot"),
		"--listen", o.listen,
		"--http-listen", o.httpListen,
		"--log-format", "json",
	}
	c.logger.Debug("starting pilot", "binary", bin, "args", args)
	pid, err := startDetached(bin, args, dataDir, log)
	if err != nil {
		return 0, err
	}
	if err := writePIDFile(pidFile, pid); err != nil {
		// Without the pid file `hangar down` could not stop it: do not leave
		// a pilot nobody can find.
		_ = killProcess(pid)
		return 0, fmt.Errorf("write %s: %w (pilot was stopped again)", pidFile, err)
	}
	fmt.Fprintf(c.stdout, "Starting pilot (%s), waiting for it to answer at %s ...\n", bin, addr)

	var exitDesc string
	err = pollUntil(ctx, 200*time.Millisecond, o.timeout, func() (bool, error) {
		if exited, desc := childExited(pid); exited {
			exitDesc = desc
			return false, errPilotExited
		}
		return pilotAnswers(ctx, cl), nil
	})
	switch {
	case err == nil:
		return pid, nil
	case errors.Is(err, errPilotExited):
		_ = os.Remove(pidFile)
		return 0, fmt.Errorf("pilot exited while starting (%s); the end of %s:\n%s", exitDesc, logFile, orNoOutput(indent(tailFile(logFile, logStart, 20), "  ")))
	case errors.Is(err, errPollTimeout):
		return 0, fmt.Errorf("pilot (pid %d) did not answer at %s within %s; it is still running. The end of %s:\n%s\nWait and run `hangar up` again, or stop it with `hangar down`",
			pid, addr, o.timeout, logFile, orNoOutput(indent(tailFile(logFile, logStart, 20), "  ")))
	default:
		return 0, fmt.Errorf("stopped waiting for pilot (pid %d), which goes on starting in the background: %w", pid, err)
	}
}

var errPilotExited = errors.New("pilot exited")

func orNoOutput(s string) string {
	if s == "" {
		return "  (no output)"
	}
	return s
}
