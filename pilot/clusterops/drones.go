package clusterops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/seal"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// The drones of the cluster's instances: waited for until each has
// connected to its frontgate, then given their renderer configuration (the
// package's confd files and the cluster's metadata key, signed, the key
// sealed to each drone).

// droneListInterval is how often the frontgate is asked which drones are
// connected while some are missing.
const droneListInterval = 300 * time.Millisecond

func (o *Ops) waitDrones(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	c, n := tc.c, tc.n
	want := map[string]bool{}
	for _, nd := range onlyNodes(agentNodes(c, tc.spec), tc.in.NodeIds) {
		want[nd.Id] = true
	}
	deadline := time.Now().Add(o.cfg.DroneWait)
	for {
		resp, err := o.callFrontgate(ctx, n, &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: c.Id}}})
		if err != nil {
			return err
		}
		missing := []string{}
		got := map[string]bool{}
		for _, d := range resp.GetDroneList().GetDrones() {
			got[d.NodeId] = true
		}
		for id := range want {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			return fmt.Errorf("drones of nodes %v did not connect to frontgate %s within %v; check the instances' agent logs", missing, n.FrontgateId, o.cfg.DroneWait)
		}
		if err := backoff.Sleep(ctx, droneListInterval); err != nil {
			return err
		}
	}
}

// waitRendered waits until every drone of the cluster (or of the task's
// nodes) reports having rendered the cluster's current metadata revision:
// its files written and their reload commands run. A drone whose render of
// that revision failed fails the step with its error; one that does not
// catch up within DroneWait fails it naming the node. What each drone
// rendered is recorded on its node.
func (o *Ops) waitRendered(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	c, n := tc.c, tc.n
	want := c.MetadataRevision
	nodes := onlyNodes(agentNodes(c, tc.spec), tc.in.NodeIds)
	deadline := time.Now().Add(o.cfg.DroneWait)
	for {
		resp, err := o.callFrontgate(ctx, n, &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: c.Id}}})
		if err != nil {
			return err
		}
		got := map[string]*streamv1.DroneInfo{}
		for _, d := range resp.GetDroneList().GetDrones() {
			got[d.NodeId] = d
		}
		var behind []string
		var failed []error
		for _, nd := range nodes {
			d := got[nd.Id]
			switch {
			case d == nil || d.RenderedRevision < want:
				behind = append(behind, nd.Id)
			case d.RenderError != "":
				failed = append(failed, fmt.Errorf("node %s (role %s) rendered revision %d with errors: %s", nd.Id, nd.Role, d.RenderedRevision, d.RenderError))
			}
		}
		if err := o.recordRendered(ctx, c.Id, got); err != nil {
			return err
		}
		if len(failed) > 0 {
			return errors.Join(failed...)
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes %v did not render metadata revision %d within %v; see their agent logs (`hangar cluster show %s` shows what each rendered)", behind, want, o.cfg.DroneWait, c.Id)
		}
		if err := backoff.Sleep(ctx, droneListInterval); err != nil {
			return err
		}
	}
}

// healthCheckOf is the health check a role's nodes run: the role's own
// health_check block, else the cluster's (OpenPitrix's rule: a role's block
// replaces the cluster's whole), or nil when none is enabled.
func healthCheckOf(spec *apppkg.ClusterSpec, role string) *streamv1.HealthCheck {
	h := spec.HealthCheck
	if ns := roleSpec(spec, role); ns != nil && ns.HealthCheck != nil {
		h = ns.HealthCheck
	}
	if h == nil || !h.Enable || h.CheckCmd == "" {
		return nil
	}
	return &streamv1.HealthCheck{
		CheckCmd:           h.CheckCmd,
		ActionCmd:          h.ActionCmd,
		IntervalSec:        int32(h.IntervalSec),
		TimeoutSec:         int32(h.TimeoutSec),
		ActionTimeoutSec:   int32(h.ActionTimeoutSec),
		HealthyThreshold:   int32(h.HealthyThreshold),
		UnhealthyThreshold: int32(h.UnhealthyThreshold),
	}
}

// anyHealthCheck says whether some role's nodes run a health check.
func anyHealthCheck(spec *apppkg.ClusterSpec) bool {
	for _, n := range spec.Nodes {
		if healthCheckOf(spec, n.Role) != nil {
			return true
		}
	}
	return false
}

// recordRendered keeps on each node the revision its drone last rendered,
// and why that render failed: a config that check_cmd refused leaves the
// old file serving, and the node is where a user looks for the reason.
func (o *Ops) recordRendered(ctx context.Context, clusterID string, drones map[string]*streamv1.DroneInfo) error {
	_, err := o.updateCluster(ctx, clusterID, func(c *pilotv1.Cluster) error {
		changed := false
		for _, nd := range c.Nodes {
			d := drones[nd.Id]
			if d == nil {
				continue
			}
			if d.RenderedRevision != nd.RenderedRevision {
				nd.RenderedRevision, changed = d.RenderedRevision, true
			}
			if msg := cutRenderError(d.RenderError); msg != nd.RenderError {
				nd.RenderError, changed = msg, true
			}
		}
		if !changed {
			return store.ErrNoChange
		}
		return nil
	})
	return err
}

// maxRenderError bounds a render error kept on a node: a check_cmd's
// output can be long, and the cluster record holds every node.
const maxRenderError = 4 << 10

// cutRenderError keeps the first maxRenderError bytes of msg, cut at a
// character (a protobuf string must stay valid UTF-8).
func cutRenderError(msg string) string {
	if len(msg) <= maxRenderError {
		return msg
	}
	cut := maxRenderError
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}

func (o *Ops) deliverConfd(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec|needPackage)
	if err != nil {
		return err
	}
	c, n, pkg := tc.c, tc.n, tc.pkg
	var key []byte
	if box := o.cfg.Packages.Box; box != nil {
		mbox, err := box.Metadata(c.Id)
		if err != nil {
			return fmt.Errorf("metadata key of cluster %s: %w", c.Id, err)
		}
		key = mbox.Key()
	}
	if len(pkg.Confd) == 0 && key == nil && !anyPassphraseless(tc.spec) && !anyHealthCheck(tc.spec) && !anyMonitor(tc.spec) {
		// Nothing to deliver: templates baked into the image (/etc/confd)
		// are the drone's own business. With a key, the delivery carries
		// only the key, which baked templates need as much as delivered
		// ones to read password env values; a health check and a
		// monitor ride on it too.
		return nil
	}
	now := time.Now()
	return forEachNode(ctx, onlyNodes(agentNodes(c, tc.spec), tc.in.NodeIds), func(ctx context.Context, nd *pilotv1.Node) error {
		files, err := o.sshFiles(ctx, c, tc.spec, nd.Role, pkg.Confd)
		if err != nil {
			return fmt.Errorf("node %s (role %s): ssh key: %w", nd.Id, nd.Role, err)
		}
		req, err := o.rendererRequest(ctx, c.Id, nd.Id, files, key, healthCheckOf(tc.spec, nd.Role), monitorOf(tc.spec, nd.Role), now)
		if err != nil {
			return fmt.Errorf("node %s (role %s): render config: %w", nd.Id, nd.Role, err)
		}
		if _, err := o.callFrontgate(ctx, n, req); err != nil {
			return fmt.Errorf("node %s (role %s): render config: %w", nd.Id, nd.Role, err)
		}
		return nil
	})
}

func anyPassphraseless(spec *apppkg.ClusterSpec) bool {
	for _, n := range spec.Nodes {
		if n.Passphraseless != "" {
			return true
		}
	}
	return false
}

// rendererRequest builds the signed ConfigureRenderer for one node, with
// the cluster's metadata key (if any) sealed to the node's certificate key.
// It is built anew for every attempt: a retry after the drone renewed its
// certificate seals to the new key, and the expiry counts from now.
func (o *Ops) rendererRequest(ctx context.Context, clusterID, nodeID string, files map[string][]byte, metadataKey []byte, hc *streamv1.HealthCheck, mon *streamv1.Monitor, now time.Time) (*streamv1.Request, error) {
	if len(o.cfg.CommandKey) == 0 {
		return nil, errors.New("not sent: pilot has no command key (clusterops.Config.CommandKey) and never sends unsigned renderer configurations")
	}
	cr := &streamv1.ConfigureRenderer{NodeId: nodeID, ClusterId: clusterID, Files: files, HealthCheck: hc, Monitor: mon, ExpiresAt: timestamppb.New(now.Add(cmdsign.RendererLifetime))}
	if len(metadataKey) > 0 {
		if o.cfg.DroneKeys == nil {
			return nil, errors.New("not sent: pilot has no drone key source (clusterops.Config.DroneKeys) to seal the metadata key to")
		}
		pub, err := o.cfg.DroneKeys.DroneKey(ctx, pki.Identity{Kind: pki.KindDrone, ID: nodeID, Cluster: clusterID})
		if err != nil {
			// The drone is connected, so it has joined: a missing record
			// is a read racing its join, or etcd.
			return nil, jobs.Retryable(err)
		}
		if cr.SealedMetadataKey, err = seal.To(pub, seal.MetadataKeyInfo(clusterID, nodeID), metadataKey); err != nil {
			return nil, fmt.Errorf("seal the metadata key: %w", err)
		}
	}
	if err := cmdsign.SignRenderer(o.cfg.CommandKey, cr); err != nil {
		return nil, err
	}
	return &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: cr}}, nil
}
