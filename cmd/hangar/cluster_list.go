package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterListCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List clusters",
		Long: `List every cluster: id, name, app and version, runtime, status, number of
nodes and creation time.`,
		Example: `  hangar cluster list
  hangar cluster list -o json | jq -r '.clusters[] | select(.status=="CLUSTER_STATUS_FAILED") | .id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.clusterList(cmd.Context())
		},
	}
}

func (c *cli) clusterList(ctx context.Context) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.ListClusters(ctx, &pilotv1.ListClustersRequest{})
	if err != nil {
		return c.rpcError("list clusters", err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	if len(resp.GetClusters()) == 0 {
		fmt.Fprintln(c.stdout, "No clusters yet. Create one with `hangar cluster create APP --wait`.")
		return nil
	}
	tw := newTable(c.stdout)
	row(tw, "ID", "NAME", "APP", "VERSION", "RUNTIME", "STATUS", "NODES", "CREATED")
	for _, k := range resp.GetClusters() {
		row(tw, k.GetId(), k.GetName(), k.GetApp(), k.GetAppVersion(), k.GetRuntime(),
			enumName(k.GetStatus().String(), "CLUSTER_STATUS_"), fmt.Sprint(len(k.GetNodes())), formatTime(k.GetCreatedAt()))
	}
	return tw.Flush()
}
