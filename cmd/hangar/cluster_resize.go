package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterResizeCmd(c *cli) *cobra.Command {
	var (
		role              string
		cpu, memory, disk int32
		wait, dryRun      bool
	)
	cmd := &cobra.Command{
		Use:   "resize ID --role ROLE [--cpu N] [--memory MIB] [--volume GIB]",
		Short: "Give a role's nodes more or less cpu and memory, or bigger volumes",
		Long: `Vertical scaling, in AppCenter's order of events: the role is listed under
vertical-scaling-roles in the metadata; each node runs stop, its instance is
stopped, resized and started, and it runs start, all of the role's nodes at
once or one at a time by server id, as the role's vertical_scaling_policy
(parallel or sequential) says. A volume that only grows is resized online,
without a stop. Then the metadata gets the new sizes (/host/cpu, memory,
volume_size) and loses vertical-scaling-roles.

New values are checked against the role's parameters in config.json
(cluster.ROLE.cpu, .memory, .volume_size: range, min, max), which then hold
them, so nodes added later get them too. A volume never shrinks. The
runtime's provider must declare the resize capability (and stop_start for
cpu or memory); otherwise nothing changes and the error names it.`,
		Example: `  hangar cluster resize cl-1a2b3c --role replica --cpu 2 --memory 4096 --dry-run
  hangar cluster resize cl-1a2b3c --role replica --volume 50 --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if role == "" {
				return fmt.Errorf("--role is required: the role whose nodes to resize; `hangar cluster show %s` lists them", id)
			}
			return c.clusterOp(cmd.Context(), id, "resize", "Resize", dryRun, wait, func(ctx context.Context, cl *pilotClients) (*pilotv1.ClusterJob, error) {
				return cl.clusters.ResizeCluster(ctx, &pilotv1.ResizeClusterRequest{Id: id, Role: role, Cpu: cpu, MemoryMib: memory, VolumeGib: disk, DryRun: dryRun})
			})
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "the role to resize (required)")
	cmd.Flags().Int32Var(&cpu, "cpu", 0, "new cpu count per node (0: keep)")
	cmd.Flags().Int32Var(&memory, "memory", 0, "new memory per node, MiB (0: keep)")
	cmd.Flags().Int32Var(&disk, "volume", 0, "new volume size per node, GiB (0: keep; never smaller)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the resize job until it ends")
	return cmd
}
