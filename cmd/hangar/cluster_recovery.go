package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterRecoveryCmd(c *cli) *cobra.Command {
	var enable, disable bool
	var lostAfter, unhealthyAfter time.Duration
	var maxDown, minDown int
	cmd := &cobra.Command{
		Use:   "recovery ID (--enable | --disable) [flags]",
		Short: "Turn automatic recovery of a cluster's failed nodes on or off",
		Long: `With recovery on, pilot replaces a node that stays lost or unhealthy by a
recover job (the job ` + "`hangar cluster recover`" + ` starts): a node whose instance the
provider reports dead as soon as it is lost (after the 4 s grace), a node whose
instance still runs (its drone cut off) after --lost-after, an unhealthy node
(its health check's action_cmd having run) after --unhealthy-after.

A meltdown guard holds replacements back when many nodes fail at once: while
more than --max-down-percent of the cluster's nodes are down and at least
--min-down are, nothing is replaced (BOSH's resurrector: 20% and 5). Pilot
keeps a guard per runtime too (pilot --recovery-max-down-percent). Each
replacement and each time a guard holds or lets go is an event
(` + "`hangar cluster events`" + `). Recovery is off unless turned on.`,
		Example: `  hangar cluster recovery cl-1a2b3c --enable
  hangar cluster recovery cl-1a2b3c --enable --lost-after 2m --unhealthy-after 5m --max-down-percent 30 --min-down 3
  hangar cluster recovery cl-1a2b3c --disable`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if enable == disable {
				return fmt.Errorf("give --enable or --disable")
			}
			p := &pilotv1.RecoveryPolicy{Enabled: enable, MaxDownPercent: int32(maxDown), MinDown: int32(minDown)}
			var err error
			if p.LostAfterSec, err = seconds("--lost-after", lostAfter); err != nil {
				return err
			}
			if p.UnhealthyAfterSec, err = seconds("--unhealthy-after", unhealthyAfter); err != nil {
				return err
			}
			return c.setRecovery(cmd.Context(), args[0], p)
		},
	}
	cmd.Flags().BoolVar(&enable, "enable", false, "replace failed nodes automatically")
	cmd.Flags().BoolVar(&disable, "disable", false, "stop replacing failed nodes")
	cmd.Flags().DurationVar(&lostAfter, "lost-after", 0, "how long a node whose instance still runs may stay lost before it is replaced (0: 60s)")
	cmd.Flags().DurationVar(&unhealthyAfter, "unhealthy-after", 0, "how long a node may stay unhealthy before it is replaced (0: 60s)")
	cmd.Flags().IntVar(&maxDown, "max-down-percent", 0, "the meltdown guard: replace nothing while more than this percent of the nodes are down (0: 20)")
	cmd.Flags().IntVar(&minDown, "min-down", 0, "the meltdown guard holds only with at least this many nodes down (0: 5)")
	return cmd
}

// seconds is d in whole seconds, for a policy field.
func seconds(flag string, d time.Duration) (int32, error) {
	if d < 0 || d%time.Second != 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("%s %s: give whole seconds from 0 (the default) to 24h, such as 90s or 5m", flag, d)
	}
	return int32(d / time.Second), nil
}

func (c *cli) setRecovery(ctx context.Context, id string, p *pilotv1.RecoveryPolicy) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	got, err := cl.clusters.SetClusterRecovery(ctx, &pilotv1.SetClusterRecoveryRequest{Id: id, Recovery: p})
	if err != nil {
		return c.rpcError("set the recovery of cluster "+id, err, clusterNotFound())
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, got.GetRecovery())
	}
	fmt.Fprintf(c.stdout, "Cluster %s: %s\n", id, recoveryLine(got.GetRecovery()))
	return nil
}

// recoveryLine says what a recovery policy does, defaults filled in.
func recoveryLine(p *pilotv1.RecoveryPolicy) string {
	if !p.GetEnabled() {
		return "recovery off"
	}
	or := func(v, def int32) int32 {
		if v == 0 {
			return def
		}
		return v
	}
	return fmt.Sprintf("recovery on: lost nodes replaced after %ds (dead instances at once), unhealthy after %ds; guard: more than %d%% and at least %d down",
		or(p.LostAfterSec, 60), or(p.UnhealthyAfterSec, 60), or(p.MaxDownPercent, 20), or(p.MinDown, 5))
}
