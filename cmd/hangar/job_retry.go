package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newJobRetryCmd(c *cli) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "retry ID",
		Short: "Run a failed or cancelled job again from where it stopped",
		Long: `Run a failed or cancelled job again: the steps that succeeded are kept, the
others run anew (their commands under new ids, so the drones run them
again), and the cluster is back in the job's state until it ends. Use it
once the cause of the failure is fixed: a create that failed on a transient
fault, an upgrade whose command you fixed on the nodes. Only a cluster's
last job can be retried. The other way out of a failed create is
` + "`hangar cluster delete`" + `, which removes whatever it made.`,
		Example: `  hangar job retry job-4d5e6f7a --wait`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.jobRetry(cmd.Context(), args[0], wait)
		},
	}
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the job until it ends")
	return cmd
}

func (c *cli) jobRetry(ctx context.Context, id string, wait bool) error {
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	j, err := cl.jobs.RetryJob(cctx, &pilotv1.RetryJobRequest{Id: id})
	if err != nil {
		return c.rpcError("retry job "+id, err, nil)
	}
	if wait {
		_, err := c.followJob(ctx, cl, id, c.stdout, c.format)
		return err
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, j)
	}
	fmt.Fprintf(c.stdout, "Retrying job %s (retry %d). Follow it with `hangar job watch %s`.\n", id, j.GetRetries(), id)
	return nil
}
