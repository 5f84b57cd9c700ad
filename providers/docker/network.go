package docker

import (
	"context"
	"net/netip"
	"sort"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// A network is an internal Docker bridge network with a /24 of the
// runtime's subnet_pool: its containers reach one another, and nothing
// else. "internal" alone is not enough: Docker still gives the bridge an
// address (the containers' default gateway) through which they would reach
// every port of the host, pilot's among them. So the bridge gets none
// (inhibit_ipv4): the host is not on the network at all, as a cloud
// account's VPC is not on pilot's.

// CreateNetwork creates the token's network, or answers the one it made.
func (p *Provider) CreateNetwork(ctx context.Context, req *providerv1.CreateNetworkRequest) (*providerv1.Network, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if err := required("idempotency_token", req.GetIdempotencyToken()); err != nil {
		return nil, err
	}
	name := networkName(cfg.id, req.GetIdempotencyToken())
	// Docker before API 1.44 lets two networks share a name: the lock keeps
	// this plugin from racing itself into that.
	p.alloc.Lock()
	defer p.alloc.Unlock()
	if n, err := p.getNetwork(ctx, cfg, name); err == nil {
		return n, nil
	} else if status.Code(err) != codes.NotFound {
		return nil, err
	}
	subnet, err := p.freeSubnet(ctx, cfg)
	if err != nil {
		return nil, err
	}
	gw := subnet.Addr().Next()
	labels := merge(base(cfg, kindNetwork), map[string]string{labelToken: req.GetIdempotencyToken(), labelName: req.GetName()})
	if _, err := cfg.c.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver:   "bridge",
		Internal: true,
		Options:  map[string]string{"com.docker.network.bridge.inhibit_ipv4": "true"},
		IPAM:     &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet, Gateway: gw}}},
		Labels:   labels,
	}); err != nil {
		return nil, engineErr(err)
	}
	p.log.Info("network created", "network_id", name, "cidr", subnet.String())
	return p.getNetwork(ctx, cfg, name)
}

// freeSubnet is the first /24 of the pool that no Docker network uses.
func (p *Provider) freeSubnet(ctx context.Context, cfg *rtConfig) (netip.Prefix, error) {
	nets, err := cfg.c.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return netip.Prefix{}, engineErr(err)
	}
	var used []netip.Prefix
	for _, n := range nets.Items {
		for _, c := range n.IPAM.Config {
			if c.Subnet.IsValid() {
				used = append(used, c.Subnet)
			}
		}
	}
	for a := cfg.pool.Addr(); cfg.pool.Contains(a); {
		cand := netip.PrefixFrom(a, 24)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
		b := a.As4()
		if b[2] == 255 {
			break
		}
		b[2]++
		a = netip.AddrFrom4(b)
	}
	return netip.Prefix{}, sdk.QuotaExceeded("networks", "the /24s of runtime.config."+keySubnetPool+" "+cfg.pool.String())
}

// GetNetwork answers a network of the runtime.
func (p *Provider) GetNetwork(ctx context.Context, req *providerv1.GetNetworkRequest) (*providerv1.Network, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if err := required("network_id", req.GetNetworkId()); err != nil {
		return nil, err
	}
	return p.getNetwork(ctx, cfg, req.GetNetworkId())
}

// getNetwork finds the runtime's network by id (its name). Where Docker
// holds several of the name, the oldest is the network.
func (p *Provider) getNetwork(ctx context.Context, cfg *rtConfig, id string) (*providerv1.Network, error) {
	list, err := cfg.c.NetworkList(ctx, client.NetworkListOptions{Filters: owned(cfg, kindNetwork).Add("name", id)})
	if err != nil {
		return nil, engineErr(err)
	}
	var found []network.Summary
	for _, n := range list.Items {
		if n.Name == id {
			found = append(found, n)
		}
	}
	if len(found) == 0 {
		return nil, sdk.NotFound("network", id)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Created.Before(found[j].Created) })
	n := found[0]
	out := &providerv1.Network{Id: n.Name, Name: n.Labels[labelName]}
	if len(n.IPAM.Config) > 0 {
		out.Cidr = n.IPAM.Config[0].Subnet.String()
	}
	return out, nil
}

// DeleteNetwork removes the network; a missing one is deleted already. A
// network with instances is refused (FailedPrecondition), like a cloud's.
func (p *Provider) DeleteNetwork(ctx context.Context, req *providerv1.DeleteNetworkRequest) (*providerv1.DeleteNetworkResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	id := req.GetNetworkId()
	if err := required("network_id", id); err != nil {
		return nil, err
	}
	ins, err := cfg.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: owned(cfg, kindInstance).Add("label", labelNetwork+"="+id)})
	if err != nil {
		return nil, engineErr(err)
	}
	if len(ins.Items) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "network %s still has %d instances (%s…): delete them first", id, len(ins.Items), ins.Items[0].Names[0])
	}
	list, err := cfg.c.NetworkList(ctx, client.NetworkListOptions{Filters: owned(cfg, kindNetwork).Add("name", id)})
	if err != nil {
		return nil, engineErr(err)
	}
	for _, n := range list.Items {
		if n.Name != id {
			continue
		}
		if _, err := cfg.c.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && status.Code(engineErr(err)) != codes.NotFound {
			return nil, engineErr(err)
		}
	}
	return &providerv1.DeleteNetworkResponse{}, nil
}
