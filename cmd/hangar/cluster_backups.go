package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterBackupsCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "backups ID",
		Short:   "List a cluster's backups, newest first",
		Long:    "List the cluster's backups: id, name, policy, the app version they were taken of, state (available once their job succeeded) and when.",
		Example: `  hangar cluster backups cl-1a2b3c -o json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, cctx, cancel, err := c.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := cl.clusters.ListBackups(cctx, &pilotv1.ListBackupsRequest{Id: args[0]})
			if err != nil {
				return c.rpcError("list backups of cluster "+args[0], err, clusterNotFound())
			}
			if c.format == formatJSON {
				return writeJSON(c.stdout, resp)
			}
			tw := newTable(c.stdout)
			fmt.Fprintln(tw, "ID\tNAME\tPOLICY\tVERSION\tSTATE\tCREATED\tJOB")
			for _, b := range resp.Backups {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Id, b.Name, b.Policy, b.AppVersion, b.State, b.CreatedAt.AsTime().Local().Format("2006-01-02 15:04:05"), b.JobId)
			}
			return tw.Flush()
		},
	}
}
