package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

type clusterDeleteOptions struct {
	force, override, wait, dryRun bool
}

func newClusterDeleteCmd(c *cli) *cobra.Command {
	o := clusterDeleteOptions{}
	cmd := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "Delete a cluster and its instances",
		Long: `Delete a cluster: run the app's stop and destroy services on its nodes,
then remove its instances, volumes and metadata.

If the app's destroy command fails, the delete job fails and the cluster
stays; --force goes on regardless, where the app allows it (allow_force,
true by default). Where a role's destroy says allow_force: false, --force is
refused, naming the role: make destroy succeed, or, as an admin, add
--override-allow-force to delete past its failure anyway. Like every change, delete runs as a job: the command prints
its id and returns, or with --wait follows it to the end and exits with
status 1 if it fails.`,
		Example: `  hangar cluster delete cl-1a2b3c --wait

  # Delete even if the app's destroy command fails
  hangar cluster delete cl-1a2b3c --force --wait

  # As an admin, even where the app says allow_force: false
  hangar cluster delete cl-1a2b3c --force --override-allow-force --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.clusterDelete(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.force, "force", false, "go on when the app's destroy command fails")
	f.BoolVar(&o.override, "override-allow-force", false, "with --force: go on past a failing destroy even where the app says allow_force: false (admins only)")
	f.BoolVarP(&o.wait, "wait", "w", false, "follow the delete job until it ends")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan (every node's stop and destroy commands) and delete nothing")
	return cmd
}

func (c *cli) clusterDelete(ctx context.Context, id string, o clusterDeleteOptions) error {
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.DeleteCluster(cctx, &pilotv1.DeleteClusterRequest{Id: id, Force: o.force, OverrideAllowForce: o.override, DryRun: o.dryRun})
	if err != nil {
		return c.rpcError("delete cluster "+id, err, clusterNotFound())
	}
	if o.dryRun {
		return c.printPlan(resp)
	}
	jobID := resp.GetJob().GetId()
	_, done, err := c.reportChange(ctx, cl, resp, o.wait, changeReport{
		accepted: fmt.Sprintf("Deleting cluster %s: job %s.", id, jobID),
		follow:   fmt.Sprintf("Follow it with `hangar job watch %s`.", jobID),
	})
	if done {
		return err
	}
	if err == nil {
		fmt.Fprintf(c.stdout, "Cluster %s deleted.\n", id)
	} else if !o.force && !isCanceled(ctx, err) {
		fmt.Fprintf(c.stdout, "\nIf the app's destroy command cannot succeed, delete with --force: `hangar cluster delete %s --force --wait`.\n", id)
	}
	return err
}
