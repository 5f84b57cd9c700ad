package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newJobCancelCmd(c *cli) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a running job",
		Long: `Ask pilot to cancel a running job. The running steps stop, no further step
starts, and the job ends cancelled; the cluster's status then says where the
cluster stands (a cancelled create leaves it failed, for example). A job that
already ended is left as it is.

Without --wait the command returns once pilot recorded the request; with
--wait it follows the job to its end (exit status 1: it did not succeed).`,
		Example: `  hangar job cancel job-4d5e6f7a --wait`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.jobCancel(cmd.Context(), args[0], wait)
		},
	}
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the job until it ends")
	return cmd
}

func (c *cli) jobCancel(ctx context.Context, id string, wait bool) error {
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	j, err := cl.jobs.CancelJob(cctx, &pilotv1.CancelJobRequest{Id: id})
	if err != nil {
		return c.rpcError("cancel job "+id, err, nil)
	}
	if wait {
		_, err := c.followJob(ctx, cl, id, c.stdout, c.format)
		return err
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, j)
	}
	if j.GetState() != pilotv1.JobState_JOB_STATE_RUNNING && j.GetState() != pilotv1.JobState_JOB_STATE_PENDING {
		fmt.Fprintf(c.stdout, "Job %s already ended: %s.\n", id, j.GetState())
		return nil
	}
	fmt.Fprintf(c.stdout, "Cancelling job %s. Follow it with `hangar job watch %s`.\n", id, id)
	return nil
}
