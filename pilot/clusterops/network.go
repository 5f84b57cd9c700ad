package clusterops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/userdata"
	"github.com/hangarhq/hangar/pilot/fglink"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// The network a cluster lives in and the frontgate that serves it: joined
// (or created) with the first cluster, left by each delete, removed with
// the last cluster.

// defaultNetwork is the one network per runtime that clusters share in this
// version (a later version lets a cluster name its VPC).
const defaultNetwork = "default"

// frontgateConnectWait bounds waiting for a frontgate to dial pilot.
const frontgateConnectWait = 90 * time.Second

func (o *Ops) createNetwork(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needProvider)
	if err != nil {
		return err
	}
	c, prov, prt := tc.c, tc.prov, tc.prt
	key := store.NetworkKey(c.Tenant, c.Runtime, defaultNetwork)
	for {
		n, err := store.Update(ctx, o.cfg.Store, key, newNetwork, func(n *pilotv1.Network) error {
			if slices.Contains(n.ClusterIds, c.Id) {
				return store.ErrNoChange
			}
			n.ClusterIds = append(n.ClusterIds, c.Id)
			return nil
		})
		if err == nil {
			_, err = o.updateCluster(ctx, c.Id, func(c *pilotv1.Cluster) error {
				if c.NetworkId == n.Id {
					return store.ErrNoChange
				}
				c.NetworkId = n.Id
				return nil
			})
			return err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// No network yet: create one. The token is this cluster's, so a
		// retry of this task finds the same network.
		pn, err := prov.CreateNetwork(ctx, &providerv1.CreateNetworkRequest{Runtime: prt, IdempotencyToken: "net-" + c.Id, Name: "hangar-" + defaultNetwork})
		if err != nil {
			return providerErr("create network", err)
		}
		rec := &pilotv1.Network{Id: pn.Id, Runtime: c.Runtime, Cidr: pn.Cidr, FrontgateId: "fg-" + pn.Id}
		if err := o.cfg.Store.Create(ctx, key, rec); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		} else if errors.Is(err, store.ErrExists) {
			// Another cluster created the network first: use theirs.
			existing := &pilotv1.Network{}
			if _, gerr := o.cfg.Store.Get(ctx, key, existing); gerr == nil && existing.Id != pn.Id {
				if _, derr := prov.DeleteNetwork(ctx, &providerv1.DeleteNetworkRequest{Runtime: prt, NetworkId: pn.Id}); derr != nil {
					o.log.Warn("delete surplus network", "network_id", pn.Id, "err", derr)
				}
			}
		}
		o.log.Info("network created", "runtime", c.Runtime, "network_id", pn.Id, "cidr", pn.Cidr)
	}
}

// network is the cluster's network record, which must still be the
// runtime's network.
func (o *Ops) network(ctx context.Context, c *pilotv1.Cluster) (*pilotv1.Network, error) {
	n := &pilotv1.Network{}
	if _, err := o.cfg.Store.Get(ctx, store.NetworkKey(c.Tenant, c.Runtime, defaultNetwork), n); err != nil {
		return nil, fmt.Errorf("network of cluster %s: %w", c.Id, err)
	}
	if n.Id != c.NetworkId {
		return nil, fmt.Errorf("cluster %s is in network %s, which is no longer the runtime's network %s", c.Id, c.NetworkId, n.Id)
	}
	return n, nil
}

func (o *Ops) ensureFrontgate(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork)
	if err != nil {
		return err
	}
	c, n := tc.c, tc.n
	if n.FrontgateInstanceId == "" {
		prov, prt, err := o.provider(ctx, c.Tenant, c.Runtime)
		if err != nil {
			return err
		}
		// A retry issues a new token; the provider returns the instance the
		// first attempt made (same idempotency token), whose user data holds
		// the first token, still valid for the hour.
		tok, err := o.joinToken(ctx, pki.Identity{Kind: pki.KindFrontgate, ID: n.FrontgateId})
		if err != nil {
			return err
		}
		inst, err := prov.RunInstance(ctx, &providerv1.RunInstanceRequest{
			Runtime:          prt,
			IdempotencyToken: n.FrontgateId,
			NetworkId:        n.Id,
			Name:             n.FrontgateId,
			Image:            "frontgate",
			UserData:         userdata.Encode(userdata.Frontgate{FrontgateID: n.FrontgateId, PilotAddress: o.cfg.PilotAddress, JoinToken: tok, CAPEM: string(o.cfg.CAPEM)}),
			Labels:           map[string]string{"hangar/role": "frontgate"},
		})
		if err != nil {
			return providerErr("run frontgate instance", err)
		}
		n, err = store.Update(ctx, o.cfg.Store, store.NetworkKey(c.Tenant, c.Runtime, defaultNetwork), newNetwork, func(n *pilotv1.Network) error {
			n.FrontgateInstanceId = inst.Id
			n.FrontgateAddress = inst.Address
			return nil
		})
		if err != nil {
			return err
		}
		o.log.Info("frontgate instance started", "frontgate_id", n.FrontgateId, "instance_id", inst.Id, "address", inst.Address)
	}
	wctx, cancel := context.WithTimeout(ctx, frontgateConnectWait)
	defer cancel()
	if err := o.cfg.Frontgates.WaitConnected(wctx, n.FrontgateId); err != nil {
		if errors.Is(err, fglink.ErrRevoked) {
			return err
		}
		return jobs.Retryable(fmt.Errorf("frontgate %s (instance %s at %s) did not connect to pilot at %s: %w", n.FrontgateId, n.FrontgateInstanceId, n.FrontgateAddress, o.cfg.PilotAddress, err))
	}
	return nil
}

// releaseNetwork takes the cluster out of its network. The last cluster out
// retires the network record first (renamed under retired/, in one
// transaction that fails if another cluster joined meanwhile), then deletes
// the frontgate and the provider network, then the retired record — so a
// crash anywhere in between is finished by the re-run.
func (o *Ops) releaseNetwork(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, 0)
	if err != nil {
		return err
	}
	c := tc.c
	if c.NetworkId == "" {
		return nil
	}
	key := store.NetworkKey(c.Tenant, c.Runtime, defaultNetwork)
	retiredKey := store.NetworkKey(c.Tenant, c.Runtime, "retired/"+c.NetworkId)
	for {
		n := &pilotv1.Network{}
		rev, err := o.cfg.Store.Get(ctx, key, n)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil && n.Id == c.NetworkId {
			n.ClusterIds = slices.DeleteFunc(n.ClusterIds, func(id string) bool { return id == c.Id })
			retired, err := o.leaveOrRetire(ctx, key, retiredKey, rev, n)
			if err != nil {
				return err
			}
			if !retired {
				continue // lost a race; look again
			}
			if len(n.ClusterIds) > 0 {
				return nil // other clusters still use the network
			}
		}
		break
	}
	n := &pilotv1.Network{}
	if _, err := o.cfg.Store.Get(ctx, retiredKey, n); errors.Is(err, store.ErrNotFound) {
		return nil // already removed, or other clusters keep it
	} else if err != nil {
		return err
	}
	prov, prt, err := o.provider(ctx, c.Tenant, c.Runtime)
	if err != nil {
		return err
	}
	if n.FrontgateInstanceId != "" {
		if _, err := prov.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: prt, InstanceId: n.FrontgateInstanceId}); err != nil {
			return providerErr("delete frontgate instance "+n.FrontgateInstanceId, err)
		}
	}
	if _, err := prov.DeleteNetwork(ctx, &providerv1.DeleteNetworkRequest{Runtime: prt, NetworkId: n.Id}); err != nil {
		return providerErr("delete network "+n.Id, err)
	}
	o.log.Info("network and frontgate removed with their last cluster", "network_id", n.Id, "frontgate_id", n.FrontgateId)
	return o.cfg.Store.Delete(ctx, retiredKey)
}

// leaveOrRetire writes the network without this cluster, or — when it was
// the last — moves it to retiredKey, guarded on the revision read.
func (o *Ops) leaveOrRetire(ctx context.Context, key, retiredKey string, rev int64, n *pilotv1.Network) (bool, error) {
	if len(n.ClusterIds) > 0 {
		_, err := store.Update(ctx, o.cfg.Store, key, newNetwork, func(cur *pilotv1.Network) error {
			cur.ClusterIds = n.ClusterIds
			return nil
		})
		return err == nil, err
	}
	ok, err := o.cfg.Store.Move(ctx, key, rev, retiredKey, n)
	return ok, err
}
