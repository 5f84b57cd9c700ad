package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newJobListCmd(c *cli) *cobra.Command {
	var clusterID string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List jobs",
		Long: `List jobs, of every cluster or of one (--cluster): id, kind, cluster,
state, tasks done out of all, and creation time.`,
		Example: `  hangar job list
  hangar job list --cluster cl-1a2b3c`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.jobList(cmd.Context(), clusterID)
		},
	}
	cmd.Flags().StringVar(&clusterID, "cluster", "", "only the jobs of this cluster")
	return cmd
}

func (c *cli) jobList(ctx context.Context, clusterID string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.jobs.ListJobs(ctx, &pilotv1.ListJobsRequest{ClusterId: clusterID})
	if err != nil {
		return c.rpcError("list jobs", err, clusterNotFound())
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	if len(resp.GetJobs()) == 0 {
		fmt.Fprintln(c.stdout, "No jobs.")
		return nil
	}
	tw := newTable(c.stdout)
	row(tw, "ID", "KIND", "CLUSTER", "STATE", "TASKS", "CREATED")
	for _, j := range resp.GetJobs() {
		row(tw, j.GetId(), j.GetKind(), j.GetClusterId(), enumName(j.GetState().String(), "JOB_STATE_"),
			jobProgress(j), formatTime(j.GetCreatedAt()))
	}
	return tw.Flush()
}
