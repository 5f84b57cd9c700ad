package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterMetricsCmd(c *cli) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "metrics ID",
		Short: "Show each node's latest metrics: cpu, memory, disk, network and the app's monitor items",
		Long: `Show the last sample pilot has of each node of a cluster: the host's cpu
(percent busy over the drone's last interval), memory (used, of the node's
container when it has one), disk (of the filesystem holding the node's root),
network (bytes per second in and out), and the items of the package's monitor
command with their units, scaled for display. Drones sample every 10 s (the
monitor's interval_sec when it sets one) and report when something changed;
a node without a sample in pilot's last 10 minutes is not shown.`,
		Example: `  hangar cluster metrics cl-1a2b3c
  hangar cluster metrics cl-1a2b3c --node cln-0c1d2e3f
  hangar cluster metrics cl-1a2b3c -o json | jq '.nodes[] | {nodeId, cpuPercent}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.clusterMetrics(cmd.Context(), args[0], node)
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "only this node (its id)")
	return cmd
}

func (c *cli) clusterMetrics(ctx context.Context, id, node string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.clusters.GetClusterMetrics(ctx, &pilotv1.GetClusterMetricsRequest{ClusterId: id, Node: node})
	if err != nil {
		return c.rpcError("get the metrics of cluster "+id, err, clusterNotFound())
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	if len(resp.GetNodes()) == 0 {
		fmt.Fprintln(c.stdout, "No metrics yet: drones report within one interval (10 s by default) of starting.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tCPU\tMEMORY\tDISK\tNET IN\tNET OUT\tSAMPLED")
	for _, n := range resp.GetNodes() {
		fmt.Fprintf(tw, "%s\t%s\t%s%%\t%s\t%s\t%s/s\t%s/s\t%s\n", n.GetNodeId(), n.GetRole(),
			number(n.GetCpuPercent()), memoryOf(n), diskOf(n), bytesOf(uint64(n.GetNetworkReceiveBytesPerSecond())), bytesOf(uint64(n.GetNetworkTransmitBytesPerSecond())),
			formatTime(n.GetTime()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range resp.GetNodes() {
		if len(n.GetItems()) == 0 && n.GetMonitorError() == "" {
			continue
		}
		var parts []string
		for _, it := range n.GetItems() {
			parts = append(parts, it.GetKey()+"="+it.GetDisplay())
		}
		if e := n.GetMonitorError(); e != "" {
			parts = append(parts, "(monitor: "+e+")")
		}
		fmt.Fprintln(c.stdout, "  "+n.GetNodeId()+": "+strings.Join(parts, "  "))
	}
	return nil
}

// number is a percentage as read: one decimal at most.
func number(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func memoryOf(n *pilotv1.NodeMetrics) string {
	if n.GetMemoryTotalBytes() == 0 {
		return "-"
	}
	return number(n.GetMemoryUsedPercent()) + "% (" + bytesOf(n.GetMemoryUsedBytes()) + ")"
}

func diskOf(n *pilotv1.NodeMetrics) string {
	if n.GetDiskTotalBytes() == 0 {
		return "-"
	}
	return bytesOf(n.GetDiskUsedBytes()) + "/" + bytesOf(n.GetDiskTotalBytes())
}

// bytesOf is a byte count in binary units.
func bytesOf(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
