package clusterops

import (
	"context"
	"fmt"
	"sort"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Reserved IPs (cluster.json's endpoints.reserved_ips and a node's
// reserved_ips): addresses of the cluster's network that no instance
// gets, reserved through the provider (capability reserved_addresses) when
// the cluster or its nodes are made, published as
// /cluster/endpoints/reserved_ips/<name>/value and
// /host/reserved_ips/<name>/value, and released with them.

const (
	taskReserveAddresses = "reserve_addresses"
	taskReleaseAddresses = "release_addresses"
)

// wantsAddresses reports whether spec reserves addresses.
func wantsAddresses(spec *apppkg.ClusterSpec) bool {
	if len(spec.ReservedIPs) > 0 {
		return true
	}
	for _, n := range spec.Nodes {
		if len(n.ReservedIPs) > 0 {
			return true
		}
	}
	return false
}

// reservedAny reports whether c or one of its nodes holds an address
// (what a delete releases: what was reserved, whatever the spec says now).
func reservedAny(c *pilotv1.Cluster) bool {
	if len(c.ReservedIps) > 0 {
		return true
	}
	for _, n := range c.Nodes {
		if len(n.ReservedIps) > 0 {
			return true
		}
	}
	return false
}

// requireAddresses refuses a cluster that reserves addresses on a runtime
// whose provider cannot.
func (l *Lifecycle) requireAddresses(ctx context.Context, c *pilotv1.Cluster, spec *apppkg.ClusterSpec) error {
	if !wantsAddresses(spec) {
		return nil
	}
	return l.requireCapability(ctx, c, "reserved_ips (addresses kept for the cluster's virtual IPs)", sdk.CapReservedAddresses,
		func(cp sdk.Capabilities) bool { return cp.ReservedAddresses })
}

// reserveAddresses reserves the cluster's addresses (when in.NodeIds is
// empty) and those of the nodes in.NodeIds (every node when empty).
func (o *Ops) reserveAddresses(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec|needProvider)
	if err != nil {
		return err
	}
	c, spec := tc.c, tc.spec
	reserve := func(token string) (string, error) {
		r, err := tc.prov.ReserveAddress(ctx, &providerv1.ReserveAddressRequest{Runtime: tc.prt, NetworkId: tc.n.Id, IdempotencyToken: token})
		if err != nil {
			return "", providerErr("reserve an address", err)
		}
		return r.GetAddress(), nil
	}
	if len(tc.in.NodeIds) == 0 {
		for _, name := range sortedKeys(spec.ReservedIPs) {
			if c.ReservedIps[name] != "" {
				continue
			}
			addr, err := reserve(c.Id + ".vip." + name)
			if err != nil {
				return fmt.Errorf("endpoints.reserved_ips.%s: %w", name, err)
			}
			if _, err := o.updateCluster(ctx, c.Id, func(c *pilotv1.Cluster) error {
				if c.ReservedIps == nil {
					c.ReservedIps = map[string]string{}
				}
				c.ReservedIps[name] = addr
				return nil
			}); err != nil {
				return err
			}
		}
	}
	for _, nd := range onlyNodes(c.Nodes, tc.in.NodeIds) {
		rs := roleSpec(spec, nd.Role)
		if rs == nil {
			continue
		}
		for _, name := range sortedKeys(rs.ReservedIPs) {
			if nd.ReservedIps[name] != "" {
				continue
			}
			addr, err := reserve(nd.Id + ".vip." + name)
			if err != nil {
				return fmt.Errorf("node %s (role %s): reserved_ips.%s: %w", nd.Id, nd.Role, name, err)
			}
			if err := o.setNode(ctx, c.Id, nd.Id, func(x *pilotv1.Node) {
				if x.ReservedIps == nil {
					x.ReservedIps = map[string]string{}
				}
				x.ReservedIps[name] = addr
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// releaseAddresses gives back the addresses of the nodes in.NodeIds, or,
// when it is empty, every address of the cluster and its nodes.
func (o *Ops) releaseAddresses(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needProvider)
	if err != nil {
		return err
	}
	c := tc.c
	release := func(addr string) error {
		if _, err := tc.prov.ReleaseAddress(ctx, &providerv1.ReleaseAddressRequest{Runtime: tc.prt, NetworkId: c.NetworkId, Address: addr}); err != nil {
			if tc.in.Force {
				// A forced delete goes on; the address goes with the
				// network when it is removed.
				o.log.Warn("forced: address not released", "cluster_id", c.Id, "address", addr, "err", err)
				return nil
			}
			return providerErr("release address "+addr, err)
		}
		return nil
	}
	if len(tc.in.NodeIds) == 0 {
		for _, addr := range c.ReservedIps {
			if err := release(addr); err != nil {
				return err
			}
		}
	}
	for _, nd := range onlyNodes(c.Nodes, tc.in.NodeIds) {
		for _, addr := range nd.ReservedIps {
			if err := release(addr); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
