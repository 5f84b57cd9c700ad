package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterStopCmd(c *cli) *cobra.Command {
	var wait, dryRun, force bool
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a cluster: its services by order, then its instances",
		Long: `Stop the cluster as AppCenter does: the app's stop service by order, then
every instance is stopped through the runtime's provider. Nodes, their data
and the cluster's metadata are kept; ` + "`hangar cluster start`" + ` brings it back.

Only runtimes whose provider can stop instances (capability stop_start) stop
clusters; on others the stop is refused before anything changes. --force
goes on past failing stop commands. --dry-run prints the plan.`,
		Example: `  hangar cluster stop cl-1a2b3c --wait
  hangar cluster stop cl-1a2b3c --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return c.clusterOp(cmd.Context(), id, "stop", "Stop", dryRun, wait, func(ctx context.Context, cl *pilotClients) (*pilotv1.ClusterJob, error) {
				return cl.clusters.StopCluster(ctx, &pilotv1.StopClusterRequest{Id: id, DryRun: dryRun, Force: force})
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "go on past failing stop commands")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the stop job until it ends")
	return cmd
}
