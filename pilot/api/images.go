package api

import (
	"context"
	"errors"
	"slices"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// The image map (an image per app version, role and runtime): kept in the
// tenant's part of pilot's store, read by the lifecycle when a change plans
// nodes (clusterops/images.go).

// maxImageRef bounds an image reference (Docker's is 255 for the name,
// plus tag and digest).
const maxImageRef = 512

// SetImage records the image of a role of an app version on a runtime.
// The version must exist and have the role, and the runtime too.
func (s *Server) SetImage(ctx context.Context, req *pilotv1.SetImageRequest) (*pilotv1.ImageMapping, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.checkImageTarget(ctx, tn, req.App, req.Version, req.Role, req.Runtime); err != nil {
		return nil, err
	}
	switch {
	case req.Image == "":
		return nil, invalid("image: required; to remove the entry use UnsetImage (`hangar image unset`)")
	case len(req.Image) > maxImageRef:
		return nil, invalid("image: %d characters, more than the %d allowed", len(req.Image), maxImageRef)
	case strings.IndexFunc(req.Image, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return nil, invalid("image %q: an image id or reference has no spaces or control characters", req.Image)
	}
	m := &pilotv1.ImageMapping{App: req.App, Version: req.Version, Role: req.Role, Runtime: req.Runtime, Image: req.Image, Tenant: tn, UpdatedAt: timestamppb.Now()}
	if err := s.cfg.Store.Put(ctx, store.ImageKey(tn, req.App, req.Version, req.Runtime, req.Role), m); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("image mapped", "app", req.App, "version", req.Version, "role", req.Role, "runtime", req.Runtime, "image", req.Image, "tenant", tn)
	return m, nil
}

// ListImages lists the tenant's image map, of one app when one is named.
func (s *Server) ListImages(ctx context.Context, req *pilotv1.ListImagesRequest) (*pilotv1.ListImagesResponse, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	if req.App != "" && !validID.MatchString(req.App) {
		return nil, invalid("app %q: names are lowercase letters, digits and dashes, starting with a letter", req.App)
	}
	list, err := store.List(ctx, s.cfg.Store, store.TenantImagesPrefix(tn, req.App), func() *pilotv1.ImageMapping { return &pilotv1.ImageMapping{} })
	if err != nil {
		return nil, toStatus(err)
	}
	return &pilotv1.ListImagesResponse{Images: list}, nil
}

// UnsetImage removes an entry of the image map.
func (s *Server) UnsetImage(ctx context.Context, req *pilotv1.UnsetImageRequest) (*pilotv1.UnsetImageResponse, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	key := store.ImageKey(tn, req.App, req.Version, req.Runtime, req.Role)
	if _, err := s.cfg.Store.Get(ctx, key, &pilotv1.ImageMapping{}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "no image is set for role %q of %s %s on runtime %s; `hangar image list` shows the map", req.Role, req.App, req.Version, req.Runtime)
		}
		return nil, toStatus(err)
	}
	if err := s.cfg.Store.Delete(ctx, key); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("image unmapped", "app", req.App, "version", req.Version, "role", req.Role, "runtime", req.Runtime, "tenant", tn)
	return &pilotv1.UnsetImageResponse{}, nil
}

// checkImageTarget checks that the app version exists with role ("" for a
// role-less app) and that the runtime exists, naming what does not.
func (s *Server) checkImageTarget(ctx context.Context, tn, app, version, role, runtime string) error {
	if version == "" {
		return invalid("version: required; an image is set per app version (`hangar app list` shows them)")
	}
	a, err := s.findApp(ctx, tn, app, version)
	if err != nil {
		return toStatus(err)
	}
	if !slices.Contains(a.Roles, role) {
		if role == "" {
			return invalid("role: required; app %s %s has the roles %s", app, version, strings.Join(a.Roles, ", "))
		}
		return invalid("role %q: app %s %s has no such role; its roles: %s", role, app, version, rolesList(a.Roles))
	}
	if runtime == "" {
		return invalid("runtime: required; `hangar runtime list` shows them")
	}
	if _, err := s.cfg.Store.Get(ctx, store.RuntimeKey(tn, runtime), &pilotv1.Runtime{}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return status.Errorf(codes.NotFound, "runtime %s: not found; `hangar runtime list` shows them", runtime)
		}
		return toStatus(err)
	}
	return nil
}

func rolesList(roles []string) string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = r
		if r == "" {
			out[i] = `"" (the app's one node entry)`
		}
	}
	return strings.Join(out, ", ")
}
