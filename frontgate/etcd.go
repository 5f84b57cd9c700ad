package frontgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/frontgate/access"
	"github.com/hangarhq/hangar/internal/etcdserver"
)

// startEtcd starts the frontgate's etcd, c, so that it never serves a
// client other than owner (the frontgate's certificate CN) while etcd auth
// is off.
//
// etcd's client-certificate check admits every certificate of pilot's CA:
// other frontgates' and every tenant's drones. Only etcd auth, with its
// per-cluster roles, narrows that down, and a fresh data dir has it off
// until access.Bootstrap enables it. So when the stored data does not show
// auth enabled, etcd first runs with its client port admitting owner's
// certificate alone (refused at the TLS handshake, before any request),
// the bootstrap runs there, and only then does etcd start as configured.
// The decision reads the stopped member's backend rather than asking the
// running etcd, because asking means serving first; and it errs only
// towards the restricted phase (see etcdserver.StoredAuthEnabled), so a
// first start that crashed before auth was on repeats it, while ordinary
// restarts skip it. The configured etcd is still checked once it serves:
// finding auth off there stops the start instead of enabling it in the
// open.
//
// It returns the running etcd and a client of it as owner; the caller
// closes both. onRestricted, when set, is called while the restricted etcd
// serves, before the bootstrap: tests probe the phase through it.
func startEtcd(ctx context.Context, c etcdserver.Config, owner string, log *slog.Logger, onRestricted func(*etcdserver.Server)) (*etcdserver.Server, *clientv3.Client, error) {
	enabled, err := etcdserver.StoredAuthEnabled(c.DataDir)
	if err != nil {
		return nil, nil, err
	}
	if !enabled {
		log.Info("etcd auth not enabled yet: bootstrapping it with only the frontgate's certificate admitted", "owner", owner)
		if err := bootstrapRestricted(ctx, c, owner, log, onRestricted); err != nil {
			return nil, nil, err
		}
	}
	srv, err := etcdserver.Start(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	cli, err := srv.Client()
	if err != nil {
		srv.Close()
		return nil, nil, fmt.Errorf("etcd client: %w", err)
	}
	if err := access.New(cli, log).CheckEnabled(ctx); err != nil {
		cli.Close()
		srv.Close()
		return nil, nil, err
	}
	return srv, cli, nil
}

// bootstrapRestricted runs access.Bootstrap on an etcd started from c with
// its client port admitting owner's certificate only, and stops it.
func bootstrapRestricted(ctx context.Context, c etcdserver.Config, owner string, log *slog.Logger, onRestricted func(*etcdserver.Server)) error {
	if c.ClientTLS == nil || !c.ClientTLS.ClientCertAuth {
		return errors.New("etcd auth bootstrap: client TLS with client certificates is required to admit the frontgate alone")
	}
	only := *c.ClientTLS
	only.AllowedCNs = []string{owner}
	c.ClientTLS = &only
	srv, err := etcdserver.Start(ctx, c)
	if err != nil {
		return fmt.Errorf("etcd auth bootstrap: %w", err)
	}
	defer srv.Close()
	if onRestricted != nil {
		onRestricted(srv)
	}
	cli, err := srv.Client()
	if err != nil {
		return fmt.Errorf("etcd auth bootstrap: etcd client: %w", err)
	}
	defer cli.Close()
	if err := access.New(cli, log).Bootstrap(ctx, owner); err != nil {
		return fmt.Errorf("etcd auth bootstrap: %w", err)
	}
	return nil
}
