package api

import (
	"context"
	"fmt"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/hostpath"
	"github.com/hangarhq/hangar/pilot/auth"
	"github.com/hangarhq/hangar/pilot/store"
	"github.com/hangarhq/hangar/providers/sdk"
)

// providerCapabilities asks a provider what pilot must enforce for its
// runtimes.
func providerCapabilities(ctx context.Context, prov providerv1.ProviderClient, name string) (sdk.Capabilities, error) {
	info, err := prov.Info(ctx, &providerv1.InfoRequest{})
	if err != nil {
		return sdk.Capabilities{}, status.Errorf(codes.Unavailable, "provider %s: Info: %v", name, status.Convert(err).Message())
	}
	return sdk.ParseCapabilities(info.GetCapabilities()), nil
}

// checkHostRuntime applies what a provider's capabilities ask of a new
// runtime: only platform admins may create one whose instances run on
// pilot's host, and its host directories must keep clear of pilot's own
// directories and of other runtimes' (of any tenant: they share the host).
// Called with s.hostMu held, so two creations cannot both pass.
func (s *Server) checkHostRuntime(ctx context.Context, caller auth.Principal, rt *pilotv1.Runtime, caps sdk.Capabilities) error {
	if caps.RunsOnPilotHost && !caller.PlatformAdmin() {
		return status.Errorf(codes.PermissionDenied,
			"runtime %s: provider %s runs instances on pilot's own host, so only admins of tenant %s (the platform team) may create its runtimes; you are %s of tenant %s — ask a platform admin to create it",
			rt.Id, rt.Provider, auth.DefaultTenant, auth.RoleName(caller.Role), caller.Tenant)
	}
	if len(caps.HostDirs) == 0 {
		return nil
	}
	dirs, err := hostDirs(rt, caps)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		for _, p := range s.protected {
			if hostpath.Overlap(d.path, p) {
				return invalid("runtime.config.%s %s overlaps %s, which holds pilot's own data and keys: choose a directory outside it", d.key, d.path, p)
			}
		}
	}
	for i, a := range dirs {
		for _, b := range dirs[i+1:] {
			if (a.exclusive || b.exclusive) && hostpath.Overlap(a.path, b.path) {
				return invalid("runtime.config.%s %s and runtime.config.%s %s overlap: %s must not share a directory with anything else", a.key, a.path, b.key, b.path, exclusiveKey(a, b))
			}
		}
	}
	others, err := store.List(ctx, s.cfg.Store, store.RuntimesPrefix, func() *pilotv1.Runtime { return &pilotv1.Runtime{} })
	if err != nil {
		return toStatus(err)
	}
	capsOf := map[string]sdk.Capabilities{rt.Provider: caps}
	for _, o := range others {
		oc, ok := capsOf[o.Provider]
		if !ok {
			prov, err := s.cfg.Providers.Get(ctx, o.Provider)
			if err == nil {
				oc, err = providerCapabilities(ctx, prov, o.Provider)
			}
			if err != nil {
				// Without its provider pilot cannot tell which of its
				// settings are directories; refusing would let one
				// broken plugin block every host runtime.
				s.log.Warn("runtime overlap check skips a runtime whose provider does not answer", "runtime", o.Id, "tenant", o.Tenant, "provider", o.Provider, "error", err)
				continue
			}
			capsOf[o.Provider] = oc
		}
		odirs, err := hostDirs(o, oc)
		if err != nil {
			continue // stored before these checks existed; its own problem
		}
		for _, a := range dirs {
			for _, b := range odirs {
				if (a.exclusive || b.exclusive) && hostpath.Overlap(a.path, b.path) {
					who := "another runtime"
					if caller.PlatformAdmin() || o.Tenant == caller.Tenant {
						who = fmt.Sprintf("runtime %s of tenant %s", o.Id, o.Tenant)
					}
					return invalid("runtime.config.%s %s overlaps runtime.config.%s %s of %s: %s must not share a directory with another runtime",
						a.key, a.path, b.key, b.path, who, exclusiveKey(a, b))
				}
			}
		}
	}
	return nil
}

type hostDir struct {
	key, path string
	exclusive bool
}

func exclusiveKey(a, b hostDir) string {
	if a.exclusive {
		return "runtime.config." + a.key
	}
	return "runtime.config." + b.key
}

// hostDirs returns the runtime's host directories, resolved, in key order.
// An unset key is skipped (the provider applies its default, which it
// checks itself).
func hostDirs(rt *pilotv1.Runtime, caps sdk.Capabilities) ([]hostDir, error) {
	var out []hostDir
	for _, k := range caps.HostDirKeys() {
		v := rt.Config[k]
		if v == "" {
			continue
		}
		if !filepath.IsAbs(v) {
			return nil, invalid("runtime.config.%s must be an absolute path, got %q", k, v)
		}
		p, err := hostpath.Resolve(v)
		if err != nil {
			return nil, invalid("runtime.config.%s %s: %v", k, v, err)
		}
		out = append(out, hostDir{key: k, path: p, exclusive: caps.HostDirs[k]})
	}
	return out, nil
}

// checkStoredHostRuntime refuses new clusters on a runtime pilot would no
// longer let anyone create: one whose instances run on pilot's host in a
// tenant other than the platform's (only a tenant's own user could have
// made it, before host runtimes were reserved to platform admins), or whose
// host directories overlap pilot's own. A provider that does not answer is
// left to fail the job as before.
func (s *Server) checkStoredHostRuntime(ctx context.Context, rt *pilotv1.Runtime) error {
	if s.cfg.Providers == nil {
		return nil
	}
	prov, err := s.cfg.Providers.Get(ctx, rt.Provider)
	if err != nil {
		return nil
	}
	caps, err := providerCapabilities(ctx, prov, rt.Provider)
	if err != nil {
		return nil
	}
	if caps.RunsOnPilotHost && rt.Tenant != auth.DefaultTenant {
		return status.Errorf(codes.FailedPrecondition,
			"runtime %s: provider %s runs instances on pilot's own host, and such runtimes are now reserved to admins of tenant %s; this one predates that and takes no new clusters — ask a platform admin for a runtime",
			rt.Id, rt.Provider, auth.DefaultTenant)
	}
	dirs, err := hostDirs(rt, caps)
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "runtime %s: %s", rt.Id, status.Convert(err).Message())
	}
	for _, d := range dirs {
		for _, p := range s.protected {
			if hostpath.Overlap(d.path, p) {
				return status.Errorf(codes.FailedPrecondition,
					"runtime %s: runtime.config.%s %s overlaps %s, which holds pilot's own data and keys; this runtime predates that check and takes no new clusters — create another runtime with a %s outside it",
					rt.Id, d.key, d.path, p, d.key)
			}
		}
	}
	return nil
}
