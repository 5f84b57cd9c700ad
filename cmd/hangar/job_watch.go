package main

import (
	"github.com/spf13/cobra"
)

func newJobWatchCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a job live until it ends",
		Long: `Follow a job as it runs: a line when a step starts (▸), when it finishes
(✓, with the time it took) or fails (✗), and when a step is retried (↻),
numbered by how many of the job's tasks are done:

  [ 4/12] ✓ start on role primary (order 1)  2.1s

At the end it prints the job's final state. If the job failed, it lists for
each failed node its id, role, exit code and the last lines of its output, and
exits with status 1 (also for a cancelled job).

If the connection to pilot breaks, watch reconnects and carries on: the job
runs inside pilot whether or not anyone watches, so nothing is lost. Ctrl-C
stops watching, not the job. With -o json, every state of the job is printed
as one JSON object per line.`,
		Example: `  hangar job watch j-4d5e6f

  # Wait for a job in a script; the exit status says whether it succeeded
  hangar job watch j-4d5e6f -o json > job.log && echo deployed`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.clients()
			if err != nil {
				return err
			}
			_, err = c.followJob(cmd.Context(), cl, args[0], c.stdout, c.format)
			return err
		},
	}
}
