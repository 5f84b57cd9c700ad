package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterStartCmd(c *cli) *cobra.Command {
	var wait, dryRun bool
	cmd := &cobra.Command{
		Use:   "start ID",
		Short: "Start a stopped cluster",
		Long: `Start a cluster stopped with ` + "`hangar cluster stop`" + `, as AppCenter does: the
instances are started again, the metadata is registered again (an address
may change), the drones reconnect and render their files, and the app's
start service runs by order. init does not run again.`,
		Example: `  hangar cluster start cl-1a2b3c --wait`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return c.clusterOp(cmd.Context(), id, "start", "Start", dryRun, wait, func(ctx context.Context, cl *pilotClients) (*pilotv1.ClusterJob, error) {
				return cl.clusters.StartCluster(ctx, &pilotv1.StartClusterRequest{Id: id, DryRun: dryRun})
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the start job until it ends")
	return cmd
}
