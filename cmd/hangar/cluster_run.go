package main

import (
	"context"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterRunCmd(c *cli) *cobra.Command {
	var (
		roles, params []string
		wait, dryRun  bool
	)
	cmd := &cobra.Command{
		Use:   "run ID SERVICE",
		Short: "Run one of the app's custom services",
		Long: `Run a custom service of the app (a service with "type": "custom" in its
cluster.json), on every role that has it or on the roles given with --role,
role groups in ascending order. --param gives the service's parameters (its
service_params); pilot checks each against the app's config.json and passes
them all to the command as one JSON argument. Parameters not given take
their defaults.

The service runs as a job; --wait follows it and exits with status 1 if it
fails. The cluster's status does not change either way. --dry-run prints the
plan (the steps and each node's command line, argument included) and
changes nothing.`,
		Example: `  hangar cluster run cl-1a2b3c repair --param node.ip=10.0.0.5 --wait
  hangar cluster run cl-1a2b3c greet --param name=ann --role lead --dry-run`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.clusterRun(cmd.Context(), args[0], args[1], roles, params, dryRun, wait)
		},
	}
	cmd.Flags().StringArrayVar(&roles, "role", nil, "run only on this role (repeatable)")
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "a service parameter, name=value (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "follow the job until it ends")
	return cmd
}

func (c *cli) clusterRun(ctx context.Context, id, service string, roles, params []string, dryRun, wait bool) error {
	values, err := parseKeyValues("--param", "--param name=value", params)
	if err != nil {
		return err
	}
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.RunClusterService(cctx, &pilotv1.RunClusterServiceRequest{Id: id, Service: service, Roles: roles, Params: values, DryRun: dryRun})
	if err != nil {
		h := clusterNotFound()
		h[codes.InvalidArgument] = "see the app's services and their parameters in its cluster.json and config.json (`hangar app show APP`)"
		return c.rpcError("run service "+service+" of cluster "+id, err, h)
	}
	return c.reportOperation(ctx, cl, resp, dryRun, wait, "Service "+service)
}
