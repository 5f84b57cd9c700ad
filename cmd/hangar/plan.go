package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/hangarhq/hangar/api/pilotv1"
)

// writePlan prints the job a dry run planned: its steps in order and, for
// the steps that run commands, which node runs what.
func writePlan(w io.Writer, r *pilotv1.ClusterJob) error {
	j := r.GetJob()
	fmt.Fprintf(w, "Plan for cluster %s (%s): %d steps; nothing was changed.\n", r.GetCluster().GetId(), j.GetKind(), len(j.GetTasks()))
	for i, t := range j.GetTasks() {
		fmt.Fprintf(w, "%d. %s\n", i+1, t.GetTitle())
		if len(t.GetNodeResults()) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, nr := range t.GetNodeResults() {
			fmt.Fprintf(tw, "   \t%s\t%s\t%s\n", nr.GetNodeId(), orDash(nr.GetRole()), nr.GetCmd())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if ch := j.GetMetadataChanges(); len(ch) > 0 {
		fmt.Fprintf(w, "Metadata changes (%d):\n", len(ch))
		for _, line := range ch {
			fmt.Fprintf(w, "   %s\n", line)
		}
	}
	return nil
}

// printPlan prints a dry run's answer: JSON with -o json, else the plan.
func (c *cli) printPlan(resp *pilotv1.ClusterJob) error {
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	return writePlan(c.stdout, resp)
}

// reportOperation reports an operation pilot accepted, or printed as a
// plan when dryRun.
func (c *cli) reportOperation(ctx context.Context, cl *pilotClients, resp *pilotv1.ClusterJob, dryRun, wait bool, what string) error {
	if dryRun {
		return c.printPlan(resp)
	}
	id, jobID := resp.GetCluster().GetId(), resp.GetJob().GetId()
	_, done, err := c.reportChange(ctx, cl, resp, wait, changeReport{
		accepted: fmt.Sprintf("%s of cluster %s: job %s.", what, id, jobID),
		follow:   fmt.Sprintf("Follow it with `hangar job watch %s`.", jobID),
		refetch:  true,
	})
	if done {
		return err
	}
	if err == nil {
		fmt.Fprintf(c.stdout, "%s of cluster %s done.\n", what, id)
	}
	return err
}

// clusterOp asks pilot for an operation on cluster id through call, then
// reports it (as a plan when dryRun). verb names it in errors ("recover
// nodes of"), what in the report ("Recover").
func (c *cli) clusterOp(ctx context.Context, id, verb, what string, dryRun, wait bool, call func(context.Context, *pilotClients) (*pilotv1.ClusterJob, error)) error {
	cl, cctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := call(cctx, cl)
	if err != nil {
		return c.rpcError(verb+" cluster "+id, err, clusterNotFound())
	}
	return c.reportOperation(ctx, cl, resp, dryRun, wait, what)
}
