package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterRollbackCmd(c *cli) *cobra.Command {
	var wait, dryRun bool
	cmd := &cobra.Command{
		Use:   "rollback ID",
		Short: "Move an upgraded cluster back to the version it came from",
		Long: `Return the cluster to the version its last upgrade came from, in the same
order of events as an upgrade (its upgrading_policy), running the rollback
service of the version being left (it knows what its upgrade changed) where
an upgrade runs upgrade, and the old version's start. Use it after a failed
or unwanted upgrade; a cluster rolls back once per upgrade.`,
		Example: `  hangar cluster rollback cl-1a2b3c --dry-run
  hangar cluster rollback cl-1a2b3c --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return c.clusterOp(cmd.Context(), id, "roll back", "Rollback", dryRun, wait, func(ctx context.Context, cl *pilotClients) (*pilotv1.ClusterJob, error) {
				return cl.clusters.RollbackCluster(ctx, &pilotv1.RollbackClusterRequest{Id: id, DryRun: dryRun})
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the rollback job until it ends")
	return cmd
}
