package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

type clusterCreateOptions struct {
	version string
	runtime string
	params  []string
	wait    bool
	dryRun  bool
}

func newClusterCreateCmd(c *cli) *cobra.Command {
	o := clusterCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create APP",
		Short: "Deploy an app as a new cluster",
		Long: `Create a cluster from a stored app (the newest version unless --version
is given) on a runtime ("local" unless --runtime is given).

Each --param KEY=VALUE sets one of the app's parameters; 'hangar app show APP'
lists them with their types, defaults and ranges. Keys are paths:
"cluster.name", "cluster.<role>.count", "cluster.<role>.memory", "env.<key>",
"env.<role>.<key>". Parameters left out take the app's defaults. Pilot checks
every value before it stores anything, and names the parameter it rejects.

The command prints the new cluster's id and the id of its create job, then
returns. With --wait it follows the job live (one line per finished step),
prints the cluster's nodes and endpoints when it is done, and exits with
status 1 if the job fails, after printing what each failed node reported.
With -o json --wait, the progress goes to stderr and stdout gets the final
cluster and job as one JSON object. --dry-run checks the parameters and
prints the plan (the steps in order, the nodes it would have), creating
nothing.`,
		Example: `  # Deploy the newest redis on this machine and wait for it
  hangar cluster create redis --wait

  # Choose the version, the runtime and some parameters
  hangar cluster create redis --version 1.2.0 --runtime docker1 \
      --param cluster.name=cache --param cluster.replica.count=2 \
      --param env.maxmemory=256

  # In a script: create, wait, read the first node's address
  hangar cluster create redis --wait -o json | jq -r '.cluster.nodes[0].address'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.clusterCreate(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.version, "version", "", "app version (default: the newest)")
	f.StringVar(&o.runtime, "runtime", "local", "runtime to deploy on")
	// StringArray, not StringSlice: multichoice values are comma-separated.
	f.StringArrayVarP(&o.params, "param", "p", nil, "parameter KEY=VALUE, e.g. env.port=6379 (repeatable)")
	f.BoolVarP(&o.wait, "wait", "w", false, "follow the create job until it ends")
	f.BoolVar(&o.dryRun, "dry-run", false, "check the parameters, print the plan and create nothing")
	return cmd
}

func (c *cli) clusterCreate(ctx context.Context, app string, o clusterCreateOptions) error {
	params, err := parseKeyValues("--param", "--param env.port=6379", o.params)
	if err != nil {
		return err
	}
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.CreateCluster(cctx, &pilotv1.CreateClusterRequest{
		App: app, AppVersion: o.version, Runtime: o.runtime, Params: params, DryRun: o.dryRun,
	})
	if err != nil {
		return c.rpcError("create cluster of "+app, err, hints{
			codes.InvalidArgument: "see the app's parameters with `hangar app show " + app + "`",
			codes.NotFound:        "see `hangar app list` and `hangar runtime list`",
		})
	}
	if o.dryRun {
		return c.printPlan(resp)
	}
	clusterID, jobID := resp.GetCluster().GetId(), resp.GetJob().GetId()
	final, done, err := c.reportChange(ctx, cl, resp, o.wait, changeReport{
		accepted: fmt.Sprintf("Cluster %s created; job %s is deploying it.", clusterID, jobID),
		follow:   fmt.Sprintf("Follow it with `hangar job watch %s`; see the cluster with `hangar cluster show %s`.", jobID, clusterID),
		refetch:  true,
	})
	if done {
		return err
	}
	var failed *jobFailedError
	switch {
	case err == nil:
		fmt.Fprintln(c.stdout)
		return writeCluster(c.stdout, final.GetCluster())
	case errors.As(err, &failed):
		fmt.Fprintf(c.stdout, "\nInspect the cluster with `hangar cluster show %s`; remove it with `hangar cluster delete %s`.\n", clusterID, clusterID)
	}
	return err
}
