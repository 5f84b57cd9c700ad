package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterUpgradeCmd(c *cli) *cobra.Command {
	var (
		version      string
		wait, dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "upgrade ID --version VERSION",
		Short: "Move a cluster to another version of its app",
		Long: `Upgrade the cluster to VERSION of its app, pushed beforehand with
` + "`hangar app push`" + `. That version must list the cluster's version in its
upgrade_policy and keep the cluster's roles; the cluster's parameters carry
over (parameters the new version lacks are dropped, new ones take their
defaults).

The new version's upgrading_policy decides the order of events:
  parallel (default)  stop by order (the old version's commands), the new
                      metadata (with upgrade-audit) and confd files on every
                      node, upgrade by order, start by order
  sequential          the new metadata, then node by node (by the roles'
                      start order, then server id): stop, confd files,
                      upgrade, start

Nodes and their data are kept. If the upgrade fails, the cluster is left
failed on the new version: fix and upgrade again, or ` + "`hangar cluster rollback`" + `.
--dry-run prints the plan, with every node's commands.`,
		Example: `  hangar cluster upgrade cl-1a2b3c --version 2.0.0 --dry-run
  hangar cluster upgrade cl-1a2b3c --version 2.0.0 --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return c.clusterOp(cmd.Context(), id, "upgrade", "Upgrade", dryRun, wait, func(ctx context.Context, cl *pilotClients) (*pilotv1.ClusterJob, error) {
				return cl.clusters.UpgradeCluster(ctx, &pilotv1.UpgradeClusterRequest{Id: id, AppVersion: version, DryRun: dryRun})
			})
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the app version to upgrade to (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the upgrade job until it ends")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}
