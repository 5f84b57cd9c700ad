package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newClusterCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Create, inspect, change and delete clusters",
		Long: `Work with clusters: running deployments of an app version on a runtime.

Every change (create, update-env, scale, restart, run, delete) starts a job inside
pilot and returns at once with the job's id; add --wait to follow the job
live and get the result, or follow it later with 'hangar job watch JOB'.
Operations on a running cluster take --dry-run to print their plan first.`,
		Example: `  hangar cluster create redis --param cluster.replica.count=2 --wait
  hangar cluster list
  hangar cluster show cl-1a2b3c
  hangar cluster update-env cl-1a2b3c maxmemory=512 --wait
  hangar cluster scale cl-1a2b3c --role replica --count 3 --wait
  hangar cluster restart cl-1a2b3c --dry-run
  hangar cluster run cl-1a2b3c repair --param node.ip=10.0.0.5 --wait
  hangar cluster stop cl-1a2b3c --wait
  hangar cluster upgrade cl-1a2b3c --version 2.0.0 --wait
  hangar cluster delete cl-1a2b3c --wait`,
		RunE: groupRunE,
	}
	cmd.AddCommand(
		newClusterCreateCmd(c),
		newClusterListCmd(c),
		newClusterShowCmd(c),
		newClusterEventsCmd(c),
		newClusterMetricsCmd(c),
		newClusterDeleteCmd(c),
		newClusterUpdateEnvCmd(c),
		newClusterScaleCmd(c),
		newClusterRecoverCmd(c),
		newClusterRecoveryCmd(c),
		newClusterAutoscaleCmd(c),
		newClusterRestartCmd(c),
		newClusterRunCmd(c),
		newClusterTabCmd(c),
		newClusterResizeCmd(c),
		newClusterBackupCmd(c),
		newClusterBackupsCmd(c),
		newClusterRestoreCmd(c),
		newClusterStopCmd(c),
		newClusterStartCmd(c),
		newClusterUpgradeCmd(c),
		newClusterRollbackCmd(c),
	)
	return cmd
}

func clusterNotFound() hints {
	return hints{codes.NotFound: "list clusters with `hangar cluster list`"}
}

// changeReport is how a command that changed a cluster reports the job
// pilot started for it.
type changeReport struct {
	// accepted is the line saying so: "Cluster cl-1 created; job j-1 is
	// deploying it."
	accepted string
	// follow is the line after it when the command does not wait.
	follow string
	// refetch reads the cluster again once the job is done (see
	// waitClusterJob).
	refetch bool
}

// reportChange reports a change pilot accepted with resp. Without wait it
// prints the acceptance (in JSON, resp) and is done. With wait it follows
// the job to its end; in JSON mode it prints the final cluster and job and
// is done, in text mode it leaves the last words to the caller (done is
// false): what the change came to, from final and err (a
// *jobFailedError when the job failed).
func (c *cli) reportChange(ctx context.Context, cl *pilotClients, resp *pilotv1.ClusterJob, wait bool, r changeReport) (final *pilotv1.ClusterJob, done bool, err error) {
	if !wait {
		if c.format == formatJSON {
			return resp, true, writeJSON(c.stdout, resp)
		}
		fmt.Fprintf(c.stdout, "%s\n%s\n", r.accepted, r.follow)
		return resp, true, nil
	}
	if c.format == formatText {
		fmt.Fprintln(c.stdout, r.accepted)
	}
	final, err = c.waitClusterJob(ctx, cl, resp, r.refetch)
	if c.format == formatJSON {
		if final.GetJob() != nil && !isCanceled(ctx, err) {
			if werr := writeJSON(c.stdout, final); werr != nil {
				return final, true, werr
			}
		}
		return final, true, err
	}
	return final, false, err
}

// waitClusterJob follows the job a cluster change started. In text mode the
// progress goes to stdout; in JSON mode it goes to stderr, so that stdout
// holds only the final ClusterJob. With refetch, the returned cluster is read
// again after the job (addresses and statuses exist only then).
func (c *cli) waitClusterJob(ctx context.Context, cl *pilotClients, resp *pilotv1.ClusterJob, refetch bool) (*pilotv1.ClusterJob, error) {
	progress := c.stdout
	if c.format == formatJSON {
		progress = c.stderr
	}
	last, jobErr := c.followJob(ctx, cl, resp.GetJob().GetId(), progress, formatText)
	final := &pilotv1.ClusterJob{Cluster: resp.GetCluster(), Job: last}
	if last == nil {
		final.Job = resp.GetJob()
	}
	if refetch && !isCanceled(ctx, jobErr) {
		cctx, cancel := callCtx(ctx)
		defer cancel()
		got, err := cl.clusters.GetCluster(cctx, &pilotv1.GetClusterRequest{Id: resp.GetCluster().GetId()})
		switch {
		case err == nil:
			final.Cluster = got
		case jobErr == nil:
			jobErr = c.rpcError("get cluster "+resp.GetCluster().GetId(), err, nil)
		}
	}
	return final, jobErr
}

// writeCluster prints a cluster: summary, nodes, endpoints and parameters.
func writeCluster(w io.Writer, cl *pilotv1.Cluster) error {
	name := cl.GetId()
	if cl.GetName() != "" {
		name += " (" + cl.GetName() + ")"
	}
	fmt.Fprintf(w, "Cluster:   %s\n", name)
	fmt.Fprintf(w, "App:       %s %s\n", cl.GetApp(), cl.GetAppVersion())
	fmt.Fprintf(w, "Runtime:   %s\n", orDash(cl.GetRuntime()))
	fmt.Fprintf(w, "Status:    %s\n", enumName(cl.GetStatus().String(), "CLUSTER_STATUS_"))
	if cl.GetNetworkId() != "" {
		fmt.Fprintf(w, "Network:   %s\n", cl.GetNetworkId())
	}
	if t := formatTime(cl.GetCreatedAt()); t != "" {
		fmt.Fprintf(w, "Created:   %s\n", t)
	}
	if cl.GetJobId() != "" {
		fmt.Fprintf(w, "Last job:  %s\n", cl.GetJobId())
	}
	if cl.GetMetadataRevision() != 0 {
		fmt.Fprintf(w, "Metadata:  revision %d (RENDERED below: the revision each node last rendered)\n", cl.GetMetadataRevision())
	}
	if cl.GetRecovery() != nil {
		fmt.Fprintf(w, "Recovery:  %s\n", recoveryLine(cl.GetRecovery()))
	}
	for _, p := range cl.GetAutoscale() {
		fmt.Fprintf(w, "Autoscale: role %s on %s, target %g, %d..%d nodes (hangar cluster autoscale list)\n", p.GetRole(), p.GetMetric(), p.GetTarget(), p.GetMin(), p.GetMax())
	}

	fmt.Fprintf(w, "\nNodes (%d):\n", len(cl.GetNodes()))
	if len(cl.GetNodes()) > 0 {
		tw := newTable(w)
		// NAME only when the app names its nodes (update_nodes_names);
		// HEALTH only when some node runs a health check.
		named, checked := false, false
		for _, n := range cl.GetNodes() {
			named = named || n.GetName() != ""
			checked = checked || n.GetHealth() != nil
		}
		header := []string{"ID", "ROLE", "SID", "INSTANCE", "ADDRESS", "STATUS", "RENDERED"}
		if checked {
			header = append(header, "HEALTH")
		}
		if named {
			header = append(header, "NAME")
		}
		row(tw, header...)
		for _, n := range cl.GetNodes() {
			sid, rendered := "", "-"
			if n.GetSid() != 0 {
				sid = strconv.Itoa(int(n.GetSid()))
			}
			if n.GetRenderedRevision() != 0 {
				rendered = strconv.FormatInt(n.GetRenderedRevision(), 10)
			}
			cells := []string{n.GetId(), n.GetRole(), sid, n.GetInstanceId(), n.GetAddress(), enumName(n.GetStatus().String(), "NODE_STATUS_"), rendered}
			if checked {
				cells = append(cells, healthCell(n.GetHealth()))
			}
			if named {
				cells = append(cells, n.GetName())
			}
			row(tw, cells...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		writeUnhealthy(w, cl.GetNodes())
		writeRenderErrors(w, cl.GetNodes())
	}

	if len(cl.GetEndpoints()) > 0 {
		fmt.Fprintln(w, "\nEndpoints:")
		tw := newTable(w)
		row(tw, "NAME", "ROLE", "ADDRESS", "PORT", "PROTOCOL")
		for _, e := range cl.GetEndpoints() {
			port := ""
			if e.GetPort() != 0 {
				port = strconv.Itoa(int(e.GetPort()))
			}
			role, addr := e.GetRole(), e.GetAddress()
			if role == "" && addr == "" { // the cluster's, served by no node in particular
				role, addr = "(cluster)", "-"
			}
			row(tw, e.GetName(), role, addr, port, e.GetProtocol())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	if len(cl.GetParams()) > 0 {
		fmt.Fprintln(w, "\nParameters:")
		keys := make([]string, 0, len(cl.GetParams()))
		for k := range cl.GetParams() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		tw := newTable(w)
		row(tw, "KEY", "VALUE")
		for _, k := range keys {
			v := cl.GetParams()[k]
			if v == "" {
				v = `""`
			}
			row(tw, k, v)
		}
		return tw.Flush()
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// healthCell is a node's health in the nodes table: its status, and how
// many checks failed in a row while it is not healthy.
func healthCell(h *pilotv1.NodeHealth) string {
	switch {
	case h == nil:
		return "-"
	case h.GetFailures() > 0:
		return fmt.Sprintf("%s (%d failed)", h.GetStatus(), h.GetFailures())
	}
	return h.GetStatus()
}

// writeUnhealthy lists, under the nodes table, what the last check of each
// node that is not healthy said: the exit code and the output's last line,
// and the action_cmd's, so that the reason is read here and not on the node.
func writeUnhealthy(w io.Writer, nodes []*pilotv1.Node) {
	for _, n := range nodes {
		h := n.GetHealth()
		if h == nil || h.GetFailures() == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s: check %s\n", n.GetId(), commandSummary(h.GetCheck()))
		if a := h.GetAction(); a != nil {
			fmt.Fprintf(w, "  %s: action_cmd %s\n", n.GetId(), commandSummary(a))
		}
	}
}

// writeRenderErrors prints, under the nodes table, why a node's last
// render failed: its old config files stay in place, so the node runs on
// while what the cluster's metadata asks for is not applied there.
func writeRenderErrors(w io.Writer, nodes []*pilotv1.Node) {
	const maxLines = 12 // the rest is in -o json
	for _, n := range nodes {
		msg := strings.TrimSpace(n.GetRenderError())
		if msg == "" {
			continue
		}
		lines := strings.Split(msg, "\n")
		fmt.Fprintf(w, "  %s: render of revision %d failed: %s\n", n.GetId(), n.GetRenderedRevision(), lines[0])
		for i, l := range lines[1:] {
			if i == maxLines {
				fmt.Fprintf(w, "    … (%d more lines: -o json)\n", len(lines)-1-maxLines)
				break
			}
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
}

func commandSummary(c *pilotv1.HealthCommand) string {
	s := fmt.Sprintf("exit %d", c.GetExitCode())
	if c.GetError() != "" {
		s += " (" + c.GetError() + ")"
	}
	lines := strings.Split(strings.TrimSpace(c.GetOutput()), "\n")
	if last := lines[len(lines)-1]; last != "" {
		s += ": " + last
	}
	if at := c.GetAt(); at != nil {
		s += " at " + at.AsTime().Local().Format(time.DateTime)
	}
	return s
}
