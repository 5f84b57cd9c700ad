package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterRecoverCmd(c *cli) *cobra.Command {
	var (
		nodes        []string
		wait, dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "recover ID --node NODE...",
		Short: "Replace the instances of lost or broken nodes",
		Long: `Replace the instance of each node given: what is left of it is deleted, a
new instance is created for the same node (same node id, same server id),
the metadata is registered with its new address, its drone gets the confd
files, and init and start run on it by order, as on a new node. The rest of
the cluster re-renders from the metadata and is otherwise untouched.

Use it for a node whose machine or process is gone, or one you want rebuilt.
--dry-run prints the plan.`,
		Example: `  hangar cluster recover cl-1a2b3c --node cln-5e6f7a8b --wait`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(nodes) == 0 {
				return fmt.Errorf("--node is required: the node (cln-...) to recover; `hangar cluster show %s` lists them", args[0])
			}
			return c.clusterRecover(cmd.Context(), args[0], nodes, dryRun, wait)
		},
	}
	cmd.Flags().StringArrayVar(&nodes, "node", nil, "a node to recover (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the recover job until it ends")
	return cmd
}

func (c *cli) clusterRecover(ctx context.Context, id string, nodes []string, dryRun, wait bool) error {
	return c.clusterOp(ctx, id, "recover nodes of", "Recover", dryRun, wait, func(ctx context.Context, cl *pilotClients) (*pilotv1.ClusterJob, error) {
		return cl.clusters.RecoverCluster(ctx, &pilotv1.RecoverClusterRequest{Id: id, NodeIds: nodes, DryRun: dryRun})
	})
}
