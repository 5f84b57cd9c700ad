package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterUpdateEnvCmd(c *cli) *cobra.Command {
	var wait, dryRun bool
	var set []string
	cmd := &cobra.Command{
		Use:   "update-env ID KEY=VALUE...",
		Short: "Change a cluster's env parameters",
		Long: `Change env parameters of a running cluster. Keys are the app's env keys
without the "env." prefix: "port", or "<role>.<key>" for a role's parameter
("replica.maxmemory"). Every env parameter can change except those config.json
marks "changeable": false (AppCenter's default is changeable); pilot checks the
values as at create time.

A key that begins with '-' (a package passing daemon flags may have "-m")
would be read as a flag: give it with --set (--set -m=64), or after --
(update-env ID -- -m=64).

Every node re-renders its configuration files from the new values and runs
their reload commands (--wait returns once every node reported rendering
the new metadata). --dry-run prints what the metadata would gain, lose or
change, and changes nothing. The change runs as a job: the command prints its id and
returns, or with --wait follows it to the end and exits with status 1 if it
fails.`,
		Example: `  hangar cluster update-env cl-1a2b3c maxmemory=512 --wait
  hangar cluster update-env cl-1a2b3c replica.maxmemory=256 port=6380

  # Keys that begin with '-'
  hangar cluster update-env cl-1a2b3c --set -m=64 --set -c=1024`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			changes := append(args[1:], set...)
			if len(changes) == 0 {
				return fmt.Errorf("give at least one KEY=VALUE to change, e.g. hangar cluster update-env %s maxmemory=512", args[0])
			}
			return c.clusterUpdateEnv(cmd.Context(), args[0], changes, wait, dryRun)
		},
	}
	cmd.Flags().StringArrayVar(&set, "set", nil, "a change, KEY=VALUE; repeatable; for keys that begin with '-' (--set -m=64)")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the update job until it ends")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what the metadata would gain, lose or change, and change nothing")
	return cmd
}

func (c *cli) clusterUpdateEnv(ctx context.Context, id string, args []string, wait, dryRun bool) error {
	for _, a := range args {
		if strings.HasPrefix(a, "env.") {
			return fmt.Errorf("argument %q: leave out the \"env.\" prefix, e.g. %s", a, strings.TrimPrefix(a, "env."))
		}
	}
	env, err := parseKeyValues("argument", "maxmemory=512", args)
	if err != nil {
		return err
	}
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.UpdateClusterEnv(cctx, &pilotv1.UpdateClusterEnvRequest{Id: id, Env: env, DryRun: dryRun})
	if err != nil {
		h := clusterNotFound()
		h[codes.InvalidArgument] = "see the app's env parameters with `hangar app show APP`"
		return c.rpcError("update env of cluster "+id, err, h)
	}
	if dryRun {
		return c.printPlan(resp)
	}
	jobID := resp.GetJob().GetId()
	_, done, err := c.reportChange(ctx, cl, resp, wait, changeReport{
		accepted: fmt.Sprintf("Updating env of cluster %s: job %s.", id, jobID),
		follow:   fmt.Sprintf("Follow it with `hangar job watch %s`.", jobID),
		refetch:  true,
	})
	if done {
		return err
	}
	if err == nil {
		fmt.Fprintf(c.stdout, "Env of cluster %s updated.\n", id)
	}
	return err
}
