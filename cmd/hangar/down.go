package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"
)

type downOptions struct {
	dataDir string
	timeout time.Duration
}

func newDownCmd(c *cli) *cobra.Command {
	o := downOptions{}
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the pilot that 'hangar up' started",
		Long: `Stop the pilot that 'hangar up' started with the same --data-dir.

down sends pilot SIGTERM, so it stops cleanly (jobs in progress are resumed
by the next pilot), waits for it to exit for at most --timeout, kills it
(SIGKILL) if it has not, and removes DATA-DIR/pilot.pid. Clusters and their
data stay in DATA-DIR/pilot; the next 'hangar up' picks them up again.

down only acts on the process recorded in the pid file, and not at all if
that process is no longer pilot. Running it when pilot is not running is
not an error.`,
		Example: `  # Stop the pilot started by 'hangar up'
  hangar down

  # Stop one started with another data folder
  hangar down --data-dir /srv/hangar`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.down(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "", "the folder given to 'hangar up' (default $HOME/.hangar)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for pilot to stop before killing it")
	return cmd
}

func (c *cli) down(ctx context.Context, o downOptions) error {
	dataDir, err := c.dataDir(o.dataDir)
	if err != nil {
		return err
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive, e.g. 30s", o.timeout)
	}
	pidFile := pidPath(dataDir)
	pid, err := readPIDFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.stdout, "pilot is not running from %s (there is no %s).\n", dataDir, pidFile)
		return nil
	}
	if err != nil {
		return err
	}
	if !processAlive(pid) {
		if err := os.Remove(pidFile); err != nil {
			return fmt.Errorf("remove stale pid file: %w", err)
		}
		fmt.Fprintf(c.stdout, "pilot (pid %d) was not running; removed the stale %s.\n", pid, pidFile)
		return nil
	}
	// A pid is reused after its process ends: never signal a stranger.
	if !isPilotProcess(pid) {
		name := processName(pid)
		return fmt.Errorf("process %d from %s is %q, not pilot: pilot has stopped and its pid was reused; remove %s", pid, pidFile, name, pidFile)
	}
	if err := terminateProcess(pid); err != nil {
		return fmt.Errorf("stop pilot (pid %d): %w", pid, err)
	}
	fmt.Fprintf(c.stdout, "Stopping pilot (pid %d) ...\n", pid)
	gone := func() (bool, error) { return !processAlive(pid), nil }
	err = pollUntil(ctx, 100*time.Millisecond, o.timeout, gone)
	if errors.Is(err, errPollTimeout) {
		fmt.Fprintf(c.stdout, "pilot did not stop within %s; killing it.\n", o.timeout)
		if err := killProcess(pid); err != nil {
			return fmt.Errorf("kill pilot (pid %d): %w", pid, err)
		}
		err = pollUntil(ctx, 100*time.Millisecond, 10*time.Second, gone)
	}
	if err != nil {
		return fmt.Errorf("wait for pilot (pid %d) to stop: %w", pid, err)
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", pidFile, err)
	}
	fmt.Fprintln(c.stdout, "pilot stopped.")
	return nil
}
