package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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

Pilot serves over TLS only and wants an API token on every call. At its first
start it creates its certificate authority (DATA-DIR/pilot/ca/ca.crt) and the
first admin's token (DATA-DIR/pilot/admin.token, readable by you alone); up
waits for both, and the other commands read them from there by default
(--ca and --token, or HANGAR_CA and HANGAR_TOKEN, point elsewhere).

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

	started := false
	pid := 0
	var conn *grpc.ClientConn
	sec, err := c.security(dataDir)
	switch {
	case err == nil:
		conn, err = dialUp(addr, sec)
		if err != nil {
			return err
		}
		if !pilotAnswers(ctx, newPilotClients(conn)) {
			_ = conn.Close()
			conn = nil
		}
	case errors.Is(err, errNoCA):
		// Before pilot's first start there is no CA yet; but without one
		// hangar cannot tell whether what listens at addr is pilot.
		if somethingListens(addr) {
			return fmt.Errorf("something answers at %s, but hangar has no CA certificate to check that it is pilot: pass its CA with --ca or %s, or choose another --listen", addr, envCA)
		}
	default:
		return err
	}
	if conn != nil {
		fmt.Fprintf(c.stdout, "pilot is already running at %s.\n", addr)
	} else {
		pid, conn, err = c.startPilot(ctx, dataDir, addr, o)
		if err != nil {
			return err
		}
		started = true
	}
	defer conn.Close()
	cl := newPilotClients(conn)

	// Say where pilot runs before anything else can fail, so a failure
	// below does not leave an unexplained pilot behind.
	w := c.stdout
	if started {
		fmt.Fprintf(w, "pilot started (pid %d).\n", pid)
	}
	fmt.Fprintf(w, "  gRPC API:  %s\n", addr)
	if started {
		fmt.Fprintf(w, "  REST API:  https://%s\n", o.httpListen)
		fmt.Fprintf(w, "  data:      %s\n", filepath.Join(dataDir, "pilot"))
		fmt.Fprintf(w, "  log:       %s\n", logPath(dataDir))
		fmt.Fprintf(w, "  CA:        %s\n", caCertPath(dataDir))
		fmt.Fprintf(w, "  admin API token: in %s (keep it secret)\n", adminTokenPath(dataDir))
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
	if o.dataDir != "" && c.caFlag == "" && c.getenv(envCA) == "" {
		// Other commands look in ~/.hangar by default: say where these are.
		fmt.Fprintf(w, "  export %s=%s %s=$(cat %s)\n", envCA, caCertPath(dataDir), envToken, adminTokenPath(dataDir))
	}
	fmt.Fprintln(w, "  hangar app push ./examples/<app>        # store an app package")
	fmt.Fprintln(w, "  hangar cluster create <app> --wait      # deploy it on this machine")
	fmt.Fprintln(w, "  hangar user create NAME --role member   # give someone else access")
	if started {
		down := "hangar down"
		if o.dataDir != "" {
			down += " --data-dir " + dataDir
		}
		fmt.Fprintf(w, "  %-39s # stop pilot\n", down)
	}
	return nil
}

// dialUp connects to the pilot up looks after, retrying quickly: gRPC's
// default backoff (1s and growing) would let a pilot that is already up
// wait unnoticed.
func dialUp(addr string, sec dialSecurity) (*grpc.ClientConn, error) {
	return dialPilot(addr, sec, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
		MinConnectTimeout: 2 * time.Second,
	}))
}

// somethingListens reports whether a TCP connection to addr succeeds.
func somethingListens(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// pilotAnswers reports whether a pilot serves its API on cl's connection.
// An answer refusing the call (a bad token, a missing role) is still
// pilot's: the call that follows reports the refusal.
func pilotAnswers(ctx context.Context, cl *pilotClients) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := cl.runtimes.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return false
	}
	return true
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

// startPilot starts a detached pilot and waits until it wrote its CA
// certificate and first admin's token (on a first start) and answers over
// TLS; it returns the connection to it.
func (c *cli) startPilot(ctx context.Context, dataDir, addr string, o upOptions) (int, *grpc.ClientConn, error) {
	pidFile, logFile := pidPath(dataDir), logPath(dataDir)
	if pid, err := readPIDFile(pidFile); err == nil && processAlive(pid) && isPilotProcess(pid) {
		return 0, nil, fmt.Errorf("the pilot started from %s (pid %d) runs but does not answer at %s: if it is still starting, run `hangar up` again in a moment; if it listens elsewhere, pass that address with --listen; or stop it with `hangar down` and see %s",
			dataDir, pid, addr, logFile)
	}
	bin, err := findPilotBinary(c.executable, c.lookPath)
	if err != nil {
		return 0, nil, err
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "pilot"), 0o700); err != nil {
		return 0, nil, fmt.Errorf("create the data folder: %w", err)
	}
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, nil, fmt.Errorf("open pilot's log: %w", err)
	}
	defer log.Close()
	logStart, err := log.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, nil, fmt.Errorf("open pilot's log: %w", err)
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
		return 0, nil, err
	}
	if err := writePIDFile(pidFile, pid); err != nil {
		// Without the pid file `hangar down` could not stop it: do not leave
		// a pilot nobody can find.
		_ = killProcess(pid)
		return 0, nil, fmt.Errorf("write %s: %w (pilot was stopped again)", pidFile, err)
	}
	fmt.Fprintf(c.stdout, "Starting pilot (%s), waiting for it to answer at %s ...\n", bin, addr)

	var exitDesc string
	var conn *grpc.ClientConn
	err = pollUntil(ctx, 200*time.Millisecond, o.timeout, func() (bool, error) {
		if exited, desc := childExited(pid); exited {
			exitDesc = desc
			return false, errPilotExited
		}
		if conn == nil {
			// Pilot writes its CA and the admin's token at its first
			// start: wait for both before the first call.
			sec, err := c.security(dataDir)
			if errors.Is(err, errNoCA) || (err == nil && sec.token == "") {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			if conn, err = dialUp(addr, sec); err != nil {
				return false, err
			}
		}
		return pilotAnswers(ctx, newPilotClients(conn)), nil
	})
	if err == nil {
		return pid, conn, nil
	}
	if conn != nil {
		_ = conn.Close()
	}
	switch {
	case errors.Is(err, errPilotExited):
		_ = os.Remove(pidFile)
		return 0, nil, fmt.Errorf("pilot exited while starting (%s); the end of %s:\n%s", exitDesc, logFile, orNoOutput(indent(tailFile(logFile, logStart, 20), "  ")))
	case errors.Is(err, errPollTimeout):
		waited := "answer at " + addr
		if conn == nil {
			waited = "write " + caCertPath(dataDir) + " and " + adminTokenPath(dataDir)
		}
		return 0, nil, fmt.Errorf("pilot (pid %d) did not %s within %s; it is still running. The end of %s:\n%s\nWait and run `hangar up` again, or stop it with `hangar down`",
			pid, waited, o.timeout, logFile, orNoOutput(indent(tailFile(logFile, logStart, 20), "  ")))
	default:
		return 0, nil, fmt.Errorf("stopped waiting for pilot (pid %d), which goes on starting in the background: %w", pid, err)
	}
}

var errPilotExited = errors.New("pilot exited")

func orNoOutput(s string) string {
	if s == "" {
		return "  (no output)"
	}
	return s
}
