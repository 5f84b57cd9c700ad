package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterScaleCmd(c *cli) *cobra.Command {
	var (
		role         string
		count        int
		wait, dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "scale ID --role ROLE --count N",
		Short: "Scale a role out or in",
		Long: `Change the number of nodes of one role, in AppCenter's order of events.

Scale-out: the role's scale_out pre_check runs on the existing nodes (a
non-zero exit refuses the scale-out and changes nothing; its output is in
the job), then the new nodes are created, registered (the existing nodes see
them under /hosts and /adding-hosts and re-render), run init and start, and
then scale_out runs on the existing nodes.

Scale-in: the nodes with the highest server ids leave. They are listed under
/deleting-hosts, scale_in's pre_check runs on the others, destroy (before
or after stop, as the app says) and stop run on the leaving nodes, scale_in
on the others, and the leaving instances are deleted.

The count is checked against the role's count parameter in config.json.
A server id is never given twice in a cluster. --dry-run prints the plan.
An app whose one node entry has no role (AppCenter's ZooKeeper) is scaled
without --role.`,
		Example: `  hangar cluster scale cl-1a2b3c --role replica --count 3 --wait
  hangar cluster scale cl-1a2b3c --role replica --count 1 --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("count") {
				return fmt.Errorf("--count is required: the role's new number of nodes")
			}
			return c.clusterScale(cmd.Context(), args[0], role, count, dryRun, wait)
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "the role to scale (leave it out for an app whose one node entry has no role, like ZooKeeper's)")
	cmd.Flags().IntVar(&count, "count", 0, "the role's new number of nodes")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the scale job until it ends")
	return cmd
}

func (c *cli) clusterScale(ctx context.Context, id, role string, count int, dryRun, wait bool) error {
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.ScaleCluster(cctx, &pilotv1.ScaleClusterRequest{Id: id, Role: role, Count: int32(count), DryRun: dryRun})
	if err != nil {
		h := clusterNotFound()
		h[codes.InvalidArgument] = "see the role's count parameter and its range with `hangar app show APP`"
		return c.rpcError("scale cluster "+id, err, h)
	}
	return c.reportOperation(ctx, cl, resp, dryRun, wait, fmt.Sprintf("Scale of role %s to %d", role, count))
}
