package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterShowCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a cluster's nodes, endpoints and parameters",
		Long: `Show one cluster: app, runtime and status; its nodes with role, server id
(sid), instance, address and status; its endpoints resolved to addresses;
and its parameter values (pilot never returns password values). The last
job that changed the cluster is shown too: 'hangar job show JOB' explains it.`,
		Example: `  hangar cluster show cl-1a2b3c
  hangar cluster show cl-1a2b3c -o json | jq -r '.endpoints[] | "\(.address):\(.port)"'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.clusterShow(cmd.Context(), args[0])
		},
	}
}

func (c *cli) clusterShow(ctx context.Context, id string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	k, err := cl.clusters.GetCluster(ctx, &pilotv1.GetClusterRequest{Id: id})
	if err != nil {
		return c.rpcError("get cluster "+id, err, clusterNotFound())
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, k)
	}
	return writeCluster(c.stdout, k)
}
