package clusterops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/store"
)

// The image map: the image a role's instances run on a runtime is the
// map's entry for (app, version, role, runtime), else the role's own
// container.image. It is chosen when a change plans nodes (create,
// scale-out) and kept on each node, so a node's replacement runs what the
// node ran. A runtime whose provider says it needs images refuses, before
// anything is created, a role that has none, or an image it does not have.

// imagesFor chooses the image of each of roles and checks the runtime has
// them.
func (l *Lifecycle) imagesFor(ctx context.Context, tenant, app, version, runtime string, spec *apppkg.ClusterSpec, roles []string) (map[string]string, error) {
	images := map[string]string{}
	for _, role := range roles {
		m := &pilotv1.ImageMapping{}
		_, err := l.cfg.Store.Get(ctx, store.ImageKey(tenant, app, version, runtime, role), m)
		switch {
		case err == nil:
			images[role] = m.Image
		case errors.Is(err, store.ErrNotFound):
			if rs := roleSpec(spec, role); rs != nil {
				images[role] = rs.Container.Image
			}
		default:
			return nil, err
		}
	}
	need, have, err := l.runtimeImages(ctx, tenant, runtime)
	if err != nil {
		return nil, err
	}
	for _, role := range roles {
		img := images[role]
		switch {
		case img == "" && need:
			return nil, refuse(Invalid, "no image for role %s of %s %s on runtime %s, whose instances need one: set one with `hangar image set --app %s --version %s --role %s --runtime %s IMAGE`, or name one in the role's container.image",
				roleName(role), app, version, runtime, app, version, role, runtime)
		case img != "" && len(have) > 0 && !slices.Contains(have, img):
			return nil, refuse(Invalid, "image %q (role %s of %s %s) is not on runtime %s; it has: %s",
				img, roleName(role), app, version, runtime, strings.Join(have, ", "))
		}
	}
	return images, nil
}

// runtimeImages asks the runtime's provider whether its instances need an
// image, and which it has (ValidateRuntime). Without providers (tests)
// none is needed.
func (l *Lifecycle) runtimeImages(ctx context.Context, tenant, runtime string) (bool, []string, error) {
	if l.cfg.Providers == nil {
		return false, nil, nil
	}
	rt := &pilotv1.Runtime{}
	if _, err := l.cfg.Store.Get(ctx, store.RuntimeKey(tenant, runtime), rt); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, nil, refuse(Invalid, "runtime %s: not found; `hangar runtime list` shows them", runtime)
		}
		return false, nil, err
	}
	prov, err := l.cfg.Providers.Get(ctx, rt.Provider)
	if err != nil {
		return false, nil, fmt.Errorf("runtime %s: provider %s: %w", runtime, rt.Provider, err)
	}
	creds, err := RuntimeCredentials(ctx, l.cfg.Store, l.cfg.Packages.Box, tenant, runtime)
	if err != nil {
		return false, nil, err
	}
	resp, err := prov.ValidateRuntime(ctx, &providerv1.ValidateRuntimeRequest{Runtime: &providerv1.Runtime{Id: rt.Id, Zone: rt.Zone, Config: rt.Config, Credentials: creds}})
	if err != nil {
		return false, nil, providerErr("runtime "+runtime+": list its images", err)
	}
	return resp.GetImagesRequired(), resp.GetImages(), nil
}

func roleName(role string) string {
	if role == "" {
		return `"" (the app's one node entry)`
	}
	return role
}
