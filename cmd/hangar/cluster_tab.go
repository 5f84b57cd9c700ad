package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

func newClusterTabCmd(c *cli) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "tab ID TAB",
		Short: "Show one of the app's display tabs (a table the app prints)",
		Long: `Run a display tab of the app (display_tabs in its cluster.json): its command
runs on the first node of each of the tab's roles and prints a table, which
is shown per node. It runs as a job, like every command Hangar runs, and
leaves the cluster as it was; the command prints the job's id and waits for
it. An unknown TAB is refused, naming the app's tabs.`,
		Example: `  hangar cluster tab cl-1a2b3c connections
  hangar cluster tab cl-1a2b3c connections -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.clusterTab(cmd.Context(), args[0], args[1], dryRun)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and run nothing")
	return cmd
}

func (c *cli) clusterTab(ctx context.Context, id, tab string, dryRun bool) error {
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.RunClusterTab(cctx, &pilotv1.RunClusterTabRequest{Id: id, Tab: tab, DryRun: dryRun})
	if err != nil {
		h := clusterNotFound()
		h[codes.InvalidArgument] = "the app's display tabs are in its cluster.json (display_tabs)"
		return c.rpcError("show tab "+tab+" of cluster "+id, err, h)
	}
	if dryRun {
		return c.printPlan(resp)
	}
	final, err := c.waitClusterJob(ctx, cl, resp, false)
	if err != nil {
		return err
	}
	rctx, rcancel := callCtx(ctx)
	defer rcancel()
	res, err := cl.jobs.ListNodeResults(rctx, &pilotv1.ListNodeResultsRequest{JobId: final.GetJob().GetId()})
	if err != nil {
		return c.rpcError("read the tab's results", err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, res)
	}
	for _, r := range res.GetResults() {
		nr := r.GetResult()
		t, err := apppkg.ParseTab(nr.GetOutput())
		if err != nil {
			return fmt.Errorf("node %s: %w", nr.GetNodeId(), err)
		}
		fmt.Fprintf(c.stdout, "\n%s on node %s (role %s):\n", tab, nr.GetNodeId(), roleOrDash(nr.GetRole()))
		tw := newTable(c.stdout)
		row(tw, t.Labels...)
		for _, cells := range t.Data {
			out := make([]string, len(cells))
			for i, cell := range cells {
				out[i] = fmt.Sprint(cell)
			}
			row(tw, out...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
