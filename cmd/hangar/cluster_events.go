package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

// followEvery is how often --follow asks pilot for newer events.
const followEvery = time.Second

func newClusterEventsCmd(c *cli) *cobra.Command {
	var limit int
	var follow bool
	cmd := &cobra.Command{
		Use:   "events ID",
		Short: "Show a cluster's events: jobs, health changes, nodes lost and back, recoveries, autoscaling",
		Long: `Show what happened to a cluster, oldest first: each job accepted and how it
ended (job); each change of a node's health (unknown, healthy, unhealthy,
lost) with what its check said (health); each node pilot marked LOST or saw
come back (node); each node replaced automatically and each time the meltdown
guard held or let go (recovery); each autoscaling decision and each new reason
for none (autoscale). A cluster keeps its newest 1,000 events. With --follow,
new events are printed as they come, until Ctrl-C.`,
		Example: `  hangar cluster events cl-1a2b3c
  hangar cluster events cl-1a2b3c --follow
  hangar cluster events cl-1a2b3c -o json | jq -r '.events[] | select(.kind == "health") | .message'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.clusterEvents(cmd.Context(), args[0], limit, follow)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "how many of the newest events to show (at most 1000)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events as they come")
	return cmd
}

func (c *cli) clusterEvents(ctx context.Context, id string, limit int, follow bool) error {
	if limit < 1 || limit > 1000 {
		return fmt.Errorf("--limit %d: give 1 to 1000", limit)
	}
	list := func(after string) ([]*pilotv1.ClusterEvent, error) {
		cl, ctx, cancel, err := c.call(ctx)
		if err != nil {
			return nil, err
		}
		defer cancel()
		resp, err := cl.clusters.ListClusterEvents(ctx, &pilotv1.ListClusterEventsRequest{ClusterId: id, After: after, Limit: int32(limit)})
		if err != nil {
			return nil, c.rpcError("list the events of cluster "+id, err, clusterNotFound())
		}
		return resp.GetEvents(), nil
	}
	evs, err := list("")
	if err != nil {
		return err
	}
	if c.format == formatJSON && !follow {
		return writeJSON(c.stdout, &pilotv1.ListClusterEventsResponse{Events: evs})
	}
	print := func(evs []*pilotv1.ClusterEvent) error {
		for _, e := range evs {
			if c.format == formatJSON {
				if err := writeJSON(c.stdout, e); err != nil {
					return err
				}
				continue
			}
			node := e.GetNodeId()
			if node == "" {
				node = "-"
			}
			fmt.Fprintf(c.stdout, "%s  %-9s %-14s %s\n", formatTime(e.GetTime()), e.GetKind(), node, e.GetMessage())
		}
		return nil
	}
	if len(evs) == 0 && !follow {
		fmt.Fprintln(c.stdout, "No events.")
		return nil
	}
	if err := print(evs); err != nil || !follow {
		return err
	}
	last := ""
	if len(evs) > 0 {
		last = evs[len(evs)-1].GetId()
	}
	t := time.NewTicker(followEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		evs, err := list(last)
		if err != nil {
			return err
		}
		if err := print(evs); err != nil {
			return err
		}
		if len(evs) > 0 {
			last = evs[len(evs)-1].GetId()
		}
	}
}
