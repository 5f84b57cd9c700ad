package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterAutoscaleCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "autoscale",
		Short: "Scale a role out and in with a metric (set, unset, list)",
		Long: `An autoscaling policy keeps a role's average of a metric near a target:
pilot samples the metric every few seconds, and when it stayed above --target
over the whole --window it starts a scale-out job of --step nodes (never beyond
--max); when it stayed below target × --scale-in-ratio, a scale-in (never below
--min). After each of its jobs the policy waits --cooldown; while any job runs
on the cluster it decides nothing. The metric is cpu (percent busy), memory
(percent used) or one of the role's monitor items (its package's monitor
block, such as requests a second). Every decision, and each new reason for
none, is an event (` + "`hangar cluster events`" + `).`,
	}
	cmd.AddCommand(newAutoscaleSetCmd(c), newAutoscaleUnsetCmd(c), newAutoscaleListCmd(c))
	return cmd
}

func newAutoscaleSetCmd(c *cli) *cobra.Command {
	p := &pilotv1.AutoscalePolicy{}
	var window, cooldown time.Duration
	var minN, maxN, step int
	cmd := &cobra.Command{
		Use:   "set ID ROLE --metric M --target T --min N --max N [flags]",
		Short: "Add or replace the autoscaling policy of a role",
		Example: `  hangar cluster autoscale set cl-1a2b3c web --metric cpu --target 70 --min 2 --max 6
  hangar cluster autoscale set cl-1a2b3c web --metric requests --target 50 --min 1 --max 4 --window 30s --cooldown 1m --step 1`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Role, p.Min, p.Max, p.Step = args[1], int32(minN), int32(maxN), int32(step)
			var err error
			if p.WindowSec, err = seconds("--window", window); err != nil {
				return err
			}
			if p.CooldownSec, err = seconds("--cooldown", cooldown); err != nil {
				return err
			}
			return c.setAutoscale(cmd.Context(), args[0], p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.Metric, "metric", "", "cpu, memory, or a monitor item of the role")
	f.Float64Var(&p.Target, "target", 0, "the role's average of the metric to keep near (cpu and memory: percent)")
	f.IntVar(&minN, "min", 0, "the fewest nodes (at least 1, within the package's count range)")
	f.IntVar(&maxN, "max", 0, "the most nodes (within the package's count range)")
	f.DurationVar(&window, "window", 0, "how long the metric must stay beyond its threshold before a decision (0: 60s)")
	f.DurationVar(&cooldown, "cooldown", 0, "how long after a scale job the policy waits before deciding again (0: 2m)")
	f.IntVar(&step, "step", 0, "nodes added or removed by one scale job (0: 1)")
	f.Float64Var(&p.ScaleInRatio, "scale-in-ratio", 0, "scale in when the metric stays below target × this (0: 0.5)")
	for _, name := range []string{"metric", "target", "min", "max"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newAutoscaleUnsetCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "unset ID ROLE",
		Short:   "Remove the autoscaling policy of a role (its node count stays as it is)",
		Example: `  hangar cluster autoscale unset cl-1a2b3c web`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ctx, cancel, err := c.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if _, err := cl.clusters.DeleteAutoscalePolicy(ctx, &pilotv1.DeleteAutoscalePolicyRequest{Id: args[0], Role: args[1]}); err != nil {
				return c.rpcError("remove the autoscaling policy of role "+args[1], err, clusterNotFound())
			}
			fmt.Fprintf(c.stdout, "Cluster %s: role %s no longer autoscales.\n", args[0], args[1])
			return nil
		},
	}
}

func newAutoscaleListCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "list ID",
		Short:   "Show a cluster's autoscaling policies and what each last decided",
		Example: `  hangar cluster autoscale list cl-1a2b3c`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ctx, cancel, err := c.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			got, err := cl.clusters.GetCluster(ctx, &pilotv1.GetClusterRequest{Id: args[0]})
			if err != nil {
				return c.rpcError("get cluster "+args[0], err, clusterNotFound())
			}
			if c.format == formatJSON {
				return writeJSON(c.stdout, &pilotv1.Cluster{Id: got.Id, Autoscale: got.Autoscale})
			}
			if len(got.Autoscale) == 0 {
				fmt.Fprintf(c.stdout, "Cluster %s has no autoscaling policy (`hangar cluster autoscale set` adds one).\n", args[0])
				return nil
			}
			printAutoscale(c, got)
			return nil
		},
	}
}

func (c *cli) setAutoscale(ctx context.Context, id string, p *pilotv1.AutoscalePolicy) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	got, err := cl.clusters.SetAutoscalePolicy(ctx, &pilotv1.SetAutoscalePolicyRequest{Id: id, Policy: p})
	if err != nil {
		return c.rpcError("set the autoscaling policy of role "+p.Role, err, clusterNotFound())
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, &pilotv1.Cluster{Id: got.Id, Autoscale: got.Autoscale})
	}
	printAutoscale(c, got)
	return nil
}

// printAutoscale is the table of a cluster's policies, defaults filled in.
func printAutoscale(c *cli, cl *pilotv1.Cluster) {
	counts := map[string]int{}
	for _, nd := range cl.Nodes {
		counts[nd.Role]++
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ROLE\tNODES\tMETRIC\tTARGET\tMIN\tMAX\tSTEP\tWINDOW\tCOOLDOWN\tLAST DECISION")
	for _, p := range cl.Autoscale {
		or := func(v, def int32) int32 {
			if v == 0 {
				return def
			}
			return v
		}
		last := p.LastDecision
		if last == "" {
			last = "-"
		} else if p.LastDecisionAt != nil {
			last = formatTime(p.LastDecisionAt) + " " + last
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%g\t%d\t%d\t%d\t%ds\t%ds\t%s\n", p.Role, counts[p.Role], p.Metric, p.Target, p.Min, p.Max,
			or(p.Step, 1), or(p.WindowSec, 60), or(p.CooldownSec, 120), last)
	}
	w.Flush()
}
