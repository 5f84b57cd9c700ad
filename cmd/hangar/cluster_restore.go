package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterRestoreCmd(c *cli) *cobra.Command {
	var (
		backup       string
		wait, dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "restore ID --backup BACKUP",
		Short: "Restore one of a cluster's backups in place",
		Long: `Restore an available backup into the cluster it was taken of, which must run
the same app version: the app's restore service runs by order, each command
getting {"snapshot_id": BACKUP} as its argument; an app without a restore
service is started by order instead (AppCenter's rule).`,
		Example: `  hangar cluster restore cl-1a2b3c --backup bk-5e6f7a8b --wait`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if backup == "" {
				return fmt.Errorf("--backup is required: the backup to restore; `hangar cluster backups %s` lists them", id)
			}
			return c.clusterOp(cmd.Context(), id, "restore", "Restore", dryRun, wait, func(ctx context.Context, cl *pilotClients) (*pilotv1.ClusterJob, error) {
				return cl.clusters.RestoreCluster(ctx, &pilotv1.RestoreClusterRequest{Id: id, BackupId: backup, DryRun: dryRun})
			})
		},
	}
	cmd.Flags().StringVar(&backup, "backup", "", "the backup to restore (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the restore job until it ends")
	return cmd
}
