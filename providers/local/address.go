package local

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
)

// Reserved addresses (capability reserved_addresses): addresses of a
// network's range that no instance gets, kept for a cluster's virtual IPs.
// On this host every address of a network's 127.x range is routable, so an
// instance of the network may bind a reserved one, as an app's keepalived
// moves a VIP between its nodes.

// reservation is one reserved address, by its idempotency token.
type reservation struct {
	Network string `json:"network"`
	Address string `json:"address"`
}

// ReserveAddress reserves the lowest free address of the network.
func (p *Provider) ReserveAddress(ctx context.Context, req *providerv1.ReserveAddressRequest) (*providerv1.ReservedAddress, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	token := req.GetIdempotencyToken()
	if err := required("idempotency_token", token); err != nil {
		return nil, err
	}
	if err := required("network_id", req.GetNetworkId()); err != nil {
		return nil, err
	}
	var out *reservation
	err = p.update(ctx, cfg, func(t *tx) error {
		if r, ok := t.st.Reserved[token]; ok {
			if r.Network != req.GetNetworkId() {
				return status.Errorf(codes.InvalidArgument, "idempotency_token %q reserved %s on network %s; use a new token for network %s", token, r.Address, r.Network, req.GetNetworkId())
			}
			out = r
			return nil
		}
		n, ok := t.st.Networks[req.GetNetworkId()]
		if !ok {
			return status.Errorf(codes.NotFound, "network %s: not found", req.GetNetworkId())
		}
		addr, err := t.freeAddress(n)
		if err != nil {
			return err
		}
		if t.st.Reserved == nil {
			t.st.Reserved = map[string]*reservation{}
		}
		out = &reservation{Network: n.ID, Address: addr}
		t.st.Reserved[token] = out
		if err := t.save(); err != nil {
			delete(t.st.Reserved, token)
			return err
		}
		p.log.Info("address reserved", "network", n.ID, "address", addr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &providerv1.ReservedAddress{NetworkId: out.Network, Address: out.Address}, nil
}

// ReleaseAddress gives a reserved address back.
func (p *Provider) ReleaseAddress(ctx context.Context, req *providerv1.ReleaseAddressRequest) (*providerv1.ReleaseAddressResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if err := required("address", req.GetAddress()); err != nil {
		return nil, err
	}
	err = p.update(ctx, cfg, func(t *tx) error {
		changed := false
		for token, r := range t.st.Reserved {
			if r.Network == req.GetNetworkId() && r.Address == req.GetAddress() {
				delete(t.st.Reserved, token)
				changed = true
			}
		}
		if !changed {
			return nil
		}
		p.log.Info("address released", "network", req.GetNetworkId(), "address", req.GetAddress())
		return t.save()
	})
	if err != nil {
		return nil, err
	}
	return &providerv1.ReleaseAddressResponse{}, nil
}
