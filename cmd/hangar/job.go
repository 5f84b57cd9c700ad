package main

import (
	"github.com/spf13/cobra"
)

func newJobCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Inspect and follow jobs",
		Long: `Work with jobs. Every change to a cluster runs inside pilot as a job: a
graph of tasks (create the network, run the instances, run the app's init and
start services role by role...) stored in pilot's etcd, retried where a retry
is safe, and resumed by pilot after a restart. A job ends succeeded, failed
or cancelled; a failed job keeps the exit code and output of every node whose
command failed.`,
		Example: `  hangar job list --cluster cl-1a2b3c
  hangar job watch j-4d5e6f
  hangar job show j-4d5e6f
  hangar job cancel j-4d5e6f --wait`,
		RunE: groupRunE,
	}
	cmd.AddCommand(newJobShowCmd(c), newJobListCmd(c), newJobWatchCmd(c), newJobCancelCmd(c), newJobRetryCmd(c))
	return cmd
}
