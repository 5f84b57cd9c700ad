package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterRestartCmd(c *cli) *cobra.Command {
	var (
		roles        []string
		wait, dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "restart ID",
		Short: "Run the app's restart service by order",
		Long: `Restart a cluster as AppCenter does: the app's restart command runs on
every node of every role that has one, role groups in ascending order of
their restart "order" (equal orders in parallel). --role limits it to some
roles. The cluster must be active (or failed) and idle.

The restart runs as a job; --wait follows it and exits with status 1 if it
fails, leaving the cluster failed. --dry-run prints the plan (the steps and
each node's command) and changes nothing.`,
		Example: `  hangar cluster restart cl-1a2b3c --wait
  hangar cluster restart cl-1a2b3c --role replica --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.clusterRestart(cmd.Context(), args[0], roles, dryRun, wait)
		},
	}
	cmd.Flags().StringArrayVar(&roles, "role", nil, "restart only this role (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the restart job until it ends")
	return cmd
}

func (c *cli) clusterRestart(ctx context.Context, id string, roles []string, dryRun, wait bool) error {
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.RestartCluster(cctx, &pilotv1.RestartClusterRequest{Id: id, Roles: roles, DryRun: dryRun})
	if err != nil {
		return c.rpcError("restart cluster "+id, err, clusterNotFound())
	}
	return c.reportOperation(ctx, cl, resp, dryRun, wait, "Restart")
}
