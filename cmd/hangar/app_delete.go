package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newAppDeleteCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME VERSION",
		Aliases: []string{"rm"},
		Short:   "Delete an app version no cluster uses",
		Long: `Delete one version of an app from pilot: its record and its package. Other
versions stay.

A version that a cluster uses is refused, naming the clusters: one that runs
it, whatever its state (a cluster being deleted still needs its package for
its destroy service and for a retried delete), one whose upgrade or rollback
is leaving it, and one whose rollback would return to it. Delete those
clusters or upgrade them first; 'hangar app list' shows who uses what. A
cluster being created from the version at the same moment either shows up
in the refusal or fails itself: no cluster is ever left on a deleted version.

The same version may be pushed again afterwards, with other contents.`,
		Example: `  hangar app list
  hangar app delete redis 1.0.0`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.appDelete(cmd.Context(), args[0], args[1])
		},
	}
}

func (c *cli) appDelete(ctx context.Context, name, version string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.apps.DeleteApp(ctx, &pilotv1.DeleteAppRequest{Name: name, Version: version})
	if err != nil {
		return c.rpcError(fmt.Sprintf("delete app %s %s", name, version), err, hints{
			codes.NotFound: "`hangar app list` shows the versions pilot keeps",
		})
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	fmt.Fprintf(c.stdout, "Deleted %s %s.\n", name, version)
	return nil
}
