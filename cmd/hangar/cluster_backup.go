package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterBackupCmd(c *cli) *cobra.Command {
	var (
		name         string
		params       []string
		wait, dryRun bool
		incremental  bool
	)
	cmd := &cobra.Command{
		Use:   "backup ID [--name NAME] [--param NAME=VALUE]...",
		Short: "Back a cluster up as its package says (backup_policy)",
		Long: `Take a backup of the cluster. With backup_policy custom in the package's
cluster.json the app backs itself up: its backup service runs by order, each
command getting one JSON argument with the backup's id as snapshot_id (and
the service's parameters, given with --param and checked against
config.json). The backup can be restored (` + "`hangar cluster restore`" + `) once its
job succeeded; ` + "`hangar cluster backups`" + ` lists them.

backup_policy device (snapshots of the volumes) needs a provider with the
snapshots capability (the local runtime has it); without it the backup is
refused before anything changes.

--incremental asks for an incremental backup, for an app whose cluster.json
says incremental_backup_supported: a custom backup's commands then get
"incremental": true in their argument; a device backup takes the provider's
snapshots as usual. Other apps refuse it.`,
		Example: `  hangar cluster backup cl-1a2b3c --name before-upgrade --wait
  hangar cluster backup cl-1a2b3c --incremental --wait
  hangar cluster backups cl-1a2b3c`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			values, err := parseKeyValues("--param", "--param name=value", params)
			if err != nil {
				return err
			}
			return c.clusterOp(cmd.Context(), id, "back up", "Backup", dryRun, wait, func(ctx context.Context, cl *pilotClients) (*pilotv1.ClusterJob, error) {
				return cl.clusters.BackupCluster(ctx, &pilotv1.BackupClusterRequest{Id: id, Name: name, Params: values, DryRun: dryRun, Incremental: incremental})
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "a name for the backup (default: its id)")
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "a parameter of the backup service, name=value (repeatable)")
	cmd.Flags().BoolVar(&incremental, "incremental", false, "an incremental backup (where the app supports one)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the backup job until it ends")
	return cmd
}
