// Package api implements pilot's public gRPC services (apps, runtimes,
// clusters, jobs, users, audit). It validates every request completely
// before writing anything, so a bad request leaves no trace. Cluster
// changes are a thin adapter, as etcd's v3rpc handlers are: check the
// caller and the request, call pilot/clusterops' Lifecycle (which writes
// each change together with its job in one etcd transaction), and map its
// error to a gRPC code.
//
// Every object belongs to the tenant of the user who created it, and every
// call sees only the caller's tenant (the Principal pilot/auth's
// interceptors put in the context; a call without one is refused). Another
// tenant's object answers NotFound with the very message a missing one
// gets, so a caller cannot even learn that it exists.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/hostpath"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/audit"
	"github.com/hangarhq/hangar/pilot/auth"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/metrics"
	"github.com/hangarhq/hangar/pilot/store"
)

// Config wires the services.
type Config struct {
	Store     *store.Store
	Engine    *jobs.Engine
	Providers ProviderSource
	Packages  *clusterops.Packages
	// Lifecycle accepts cluster changes; nil: one over Store, Engine,
	// Packages and MaxClusterNodes.
	Lifecycle *clusterops.Lifecycle
	// RuntimeDefaults fills provider-specific runtime config left empty
	// (for local: root_dir and bin_dir).
	RuntimeDefaults func(rt *pilotv1.Runtime)
	// Users backs UserService; Audit backs AuditService. Without them
	// those services answer Unimplemented.
	Users *auth.Users
	Audit *audit.Log
	// Events backs ListClusterEvents (nil: Unimplemented).
	Events *events.Log
	// Metrics backs GetClusterMetrics (nil: Unimplemented).
	Metrics *metrics.Store
	// Box seals password parameters and provider credentials at rest; nil
	// (tests) stores them as given.
	Box *secretbox.Box
	// ProtectedDirs hold pilot's own secrets on its host (its data
	// directory, the secret key's file): no host directory of a runtime
	// (see sdk.CapHostDirPrefix) may overlap one.
	ProtectedDirs []string
	// MaxClusterNodes is clusterops.LifecycleConfig.MaxClusterNodes, for
	// the Lifecycle New makes.
	MaxClusterNodes int
	Logger          *slog.Logger
}

// ProviderSource hands out provider clients (*providers.Host starts the
// plugins; tests give an in-process fake).
type ProviderSource interface {
	Get(ctx context.Context, name string) (providerv1.ProviderClient, error)
}

// Server implements the pilotv1 services.
type Server struct {
	pilotv1.UnimplementedAppServiceServer
	pilotv1.UnimplementedRuntimeServiceServer
	pilotv1.UnimplementedClusterServiceServer
	pilotv1.UnimplementedJobServiceServer
	pilotv1.UnimplementedUserServiceServer
	pilotv1.UnimplementedAuditServiceServer

	cfg Config
	log *slog.Logger
	// protected is cfg.ProtectedDirs resolved.
	protected []string
	// hostMu serialises the creation of runtimes with host directories,
	// so that two overlapping ones cannot both pass the overlap check.
	hostMu sync.Mutex
}

// New returns the API server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Packages == nil {
		cfg.Packages = clusterops.NewPackages(cfg.Store)
		cfg.Packages.Box = cfg.Box
	}
	if cfg.Lifecycle == nil {
		cfg.Lifecycle = clusterops.NewLifecycle(clusterops.LifecycleConfig{Store: cfg.Store, Packages: cfg.Packages, Jobs: cfg.Engine,
			MaxClusterNodes: cfg.MaxClusterNodes, Providers: cfg.Providers, Logger: cfg.Logger})
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	for _, d := range cfg.ProtectedDirs {
		if r, err := hostpath.Resolve(d); err == nil {
			s.protected = append(s.protected, r)
		} else {
			// Compare at least the path as given.
			s.protected = append(s.protected, filepath.Clean(d))
		}
	}
	return s
}

// toStatus maps internal errors to gRPC codes.
func toStatus(err error) error {
	var refused *clusterops.RefusedError
	switch {
	case err == nil:
		return nil
	case status.Code(err) != codes.Unknown:
		return err
	case errors.As(err, &refused):
		if refused.Reason == clusterops.Precondition {
			return status.Error(codes.FailedPrecondition, refused.Msg)
		}
		return status.Error(codes.InvalidArgument, refused.Msg)
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

var validID = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// tenant is the caller's tenant; handlers never run without one.
func tenant(ctx context.Context) (string, error) {
	p, err := auth.Require(ctx)
	return p.Tenant, err
}

// ---- apps ----

// PushApp validates a package and stores it with its archive in the
// caller's tenant.
func (s *Server) PushApp(ctx context.Context, req *pilotv1.PushAppRequest) (*pilotv1.App, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.Archive) == 0 {
		return nil, invalid("archive: the package .tar.gz is required")
	}
	if len(req.Archive) > apppkg.MaxArchiveBytes {
		return nil, invalid("archive: %d bytes is over the %d-byte limit", len(req.Archive), apppkg.MaxArchiveBytes)
	}
	pkg, err := apppkg.LoadArchiveWith(bytes.NewReader(req.Archive), apppkg.LoadOptions{Name: req.Name, Version: req.Version})
	if err != nil {
		return nil, invalid("package: %v", err)
	}
	// Catalog names are lowercase; OpenPitrix allows capitals ("Nginx").
	name := strings.ToLower(pkg.Meta.Name)
	if name != pkg.Meta.Name {
		pkg.Warnings = append(pkg.Warnings, fmt.Sprintf("package.json: name %q is kept in the catalog as %q (catalog names are lowercase)", pkg.Meta.Name, name))
	}
	// Loading rendered the package with its defaults, so template errors
	// fail the push, not the first create.
	if !validID.MatchString(name) {
		return nil, invalid("package.json name %q: use letters, digits and dashes, starting with a letter", pkg.Meta.Name)
	}
	app := &pilotv1.App{
		Name:        name,
		Version:     pkg.Meta.Version,
		AppVersion:  pkg.Meta.AppVersion,
		Description: pkg.Meta.Description,
		ConfigJson:  string(pkg.Config.Raw),
		CreatedAt:   timestamppb.Now(),
		Warnings:    pkg.Warnings,
		Tenant:      tn,
	}
	for lang, texts := range pkg.Locales {
		if app.Locales == nil {
			app.Locales = map[string]*pilotv1.Locale{}
		}
		app.Locales[lang] = &pilotv1.Locale{Texts: texts}
	}
	app.Roles = pkg.Roles
	err = s.cfg.Store.CreateAll(ctx, map[string]proto.Message{store.AppKey(tn, app.Name, app.Version): app},
		map[string][]byte{store.ArchiveKey(tn, app.Name, app.Version): req.Archive})
	if errors.Is(err, store.ErrExists) {
		old, gerr := s.cfg.Store.GetRaw(ctx, store.ArchiveKey(tn, app.Name, app.Version))
		if gerr == nil && bytes.Equal(old, req.Archive) {
			existing := &pilotv1.App{}
			if _, err := s.cfg.Store.Get(ctx, store.AppKey(tn, app.Name, app.Version), existing); err == nil {
				return existing, nil
			}
		}
		return nil, status.Errorf(codes.AlreadyExists, "app %s version %s exists with different contents; raise version in package.json", app.Name, app.Version)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("app pushed", "app", app.Name, "version", app.Version, "tenant", tn, "roles", app.Roles, "warnings", len(app.Warnings))
	return app, nil
}

// ListApps lists every version of the tenant's apps.
func (s *Server) ListApps(ctx context.Context, _ *pilotv1.ListAppsRequest) (*pilotv1.ListAppsResponse, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	apps, err := store.List(ctx, s.cfg.Store, store.TenantAppsPrefix(tn), func() *pilotv1.App { return &pilotv1.App{} })
	if err != nil {
		return nil, toStatus(err)
	}
	clusters, err := store.List(ctx, s.cfg.Store, store.ClustersPrefix, func() *pilotv1.Cluster { return &pilotv1.Cluster{} })
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pilotv1.ListAppsResponse{Apps: apps}
	for _, a := range apps {
		if ids := appUsers(clusters, tn, a.Name, a.Version); len(ids) > 0 {
			resp.Users = append(resp.Users, &pilotv1.AppVersionUsers{Name: a.Name, Version: a.Version, ClusterIds: ids})
		}
	}
	return resp, nil
}

// appUsers returns the ids of the tenant's clusters that use an app
// version, sorted: those on it, whatever their state (a cluster being
// deleted needs its package for destroy and for a retried delete), those
// whose running upgrade or rollback leaves it, and those whose rollback
// would return to it.
func appUsers(clusters []*pilotv1.Cluster, tenant, name, version string) []string {
	var ids []string
	for _, c := range clusters {
		if c.Tenant != tenant || c.App != name {
			continue
		}
		if c.AppVersion == version || c.UpgradingFrom == version || c.PreviousAppVersion == version {
			ids = append(ids, c.Id)
		}
	}
	sort.Strings(ids)
	return ids
}

// DeleteApp deletes an app version that no cluster of the tenant uses. The
// clusters are checked and the version deleted under one guard (see
// store.DeleteGuarded), and a change that puts a cluster on a version
// guards the version's archive, so a cluster created at the same time
// either makes the delete refuse or fails itself: no cluster is left on a
// deleted version.
func (s *Server) DeleteApp(ctx context.Context, req *pilotv1.DeleteAppRequest) (*pilotv1.DeleteAppResponse, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	if req.Version == "" {
		return nil, invalid("version: required; versions are deleted one at a time (`hangar app list` shows them)")
	}
	if _, err := s.findApp(ctx, tn, req.Name, req.Version); err != nil {
		return nil, toStatus(err)
	}
	keys := []string{store.AppKey(tn, req.Name, req.Version), store.ArchiveKey(tn, req.Name, req.Version)}
	err = s.cfg.Store.DeleteGuarded(ctx, keys, store.ClustersPrefix, func(vals map[string][]byte) error {
		clusters := make([]*pilotv1.Cluster, 0, len(vals))
		for k, v := range vals {
			c := &pilotv1.Cluster{}
			if err := store.Decode(k, v, c); err != nil {
				return err
			}
			clusters = append(clusters, c)
		}
		if ids := appUsers(clusters, tn, req.Name, req.Version); len(ids) > 0 {
			return status.Errorf(codes.FailedPrecondition, "app %s version %s is used by cluster %s; delete those clusters (or upgrade them to another version) first",
				req.Name, req.Version, strings.Join(ids, ", "))
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "app %s version %s: not found; `hangar app list` shows what was pushed", req.Name, req.Version)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	s.cfg.Packages.Forget(tn, req.Name, req.Version)
	s.log.Info("app version deleted", "app", req.Name, "version", req.Version, "tenant", tn)
	return &pilotv1.DeleteAppResponse{}, nil
}

// GetApp returns a version of an app, the newest when none is named.
func (s *Server) GetApp(ctx context.Context, req *pilotv1.GetAppRequest) (*pilotv1.App, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	app, err := s.findApp(ctx, tn, req.Name, req.Version)
	return app, toStatus(err)
}

// findApp looks only in the tenant's apps: another tenant's app of the
// same name is, for this caller, not there.
func (s *Server) findApp(ctx context.Context, tn, name, version string) (*pilotv1.App, error) {
	if name == "" {
		return nil, invalid("app: a name is required")
	}
	if !validID.MatchString(name) {
		return nil, invalid("app %q: names are lowercase letters, digits and dashes, starting with a letter", name)
	}
	if version != "" {
		app := &pilotv1.App{}
		if _, err := s.cfg.Store.Get(ctx, store.AppKey(tn, name, version), app); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, status.Errorf(codes.NotFound, "app %s version %s: not found; `hangar app list` shows what was pushed", name, version)
			}
			return nil, err
		}
		return app, nil
	}
	apps, err := store.List(ctx, s.cfg.Store, store.TenantAppsPrefix(tn)+name+"/", func() *pilotv1.App { return &pilotv1.App{} })
	if err != nil {
		return nil, err
	}
	if len(apps) == 0 {
		return nil, status.Errorf(codes.NotFound, "app %s: not found; push it with `hangar app push DIR`", name)
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].CreatedAt.AsTime().Before(apps[j].CreatedAt.AsTime()) })
	return apps[len(apps)-1], nil
}

func (s *Server) pkg(ctx context.Context, tn, name, version string) (*apppkg.Package, error) {
	return s.cfg.Packages.Get(ctx, tn, name, version)
}

// ---- runtimes ----

// CreateRuntime registers a runtime of the caller's tenant after its
// provider accepted its config.
func (s *Server) CreateRuntime(ctx context.Context, req *pilotv1.CreateRuntimeRequest) (*pilotv1.Runtime, error) {
	caller, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	tn := caller.Tenant
	if !validID.MatchString(req.Id) {
		return nil, invalid("id %q: use lowercase letters, digits and dashes, starting with a letter", req.Id)
	}
	if req.Provider == "" {
		return nil, invalid("provider: required (e.g. local)")
	}
	for k := range req.Credentials {
		if k == "" {
			return nil, invalid("credentials: a credential needs a name (KEY=VALUE)")
		}
	}
	rt := &pilotv1.Runtime{Id: req.Id, Provider: req.Provider, Zone: req.Zone, Config: req.Config, CreatedAt: timestamppb.Now(), Tenant: tn}
	for k := range req.Credentials {
		rt.CredentialKeys = append(rt.CredentialKeys, k)
	}
	sort.Strings(rt.CredentialKeys)
	if rt.Config == nil {
		rt.Config = map[string]string{}
	}
	if s.cfg.RuntimeDefaults != nil {
		s.cfg.RuntimeDefaults(rt)
	}
	existing := &pilotv1.Runtime{}
	if _, err := s.cfg.Store.Get(ctx, store.RuntimeKey(tn, rt.Id), existing); err == nil {
		return nil, status.Errorf(codes.AlreadyExists, "runtime %s exists", rt.Id)
	}
	if s.cfg.Providers == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "provider %q: this pilot has no provider host (api.Config.Providers)", rt.Provider)
	}
	prov, err := s.cfg.Providers.Get(ctx, rt.Provider)
	if err != nil {
		return nil, invalid("provider %q: %v", rt.Provider, err)
	}
	caps, err := providerCapabilities(ctx, prov, rt.Provider)
	if err != nil {
		return nil, err
	}
	if len(caps.HostDirs) > 0 {
		// Held until the runtime is stored: the check and the write are
		// one step for every other creation of a host runtime.
		s.hostMu.Lock()
		defer s.hostMu.Unlock()
	}
	// Before the provider sees the runtime: validating it may already
	// create its directories.
	if err := s.checkHostRuntime(ctx, caller, rt, caps); err != nil {
		return nil, err
	}
	// The provider checks the credentials in clear; only pilot's etcd gets
	// them sealed, apart from the Runtime record the API returns.
	if _, err := prov.ValidateRuntime(ctx, &providerv1.ValidateRuntimeRequest{Runtime: &providerv1.Runtime{Id: rt.Id, Zone: rt.Zone, Config: rt.Config, Credentials: req.Credentials}}); err != nil {
		return nil, invalid("runtime %s rejected by provider %s: %v", rt.Id, rt.Provider, status.Convert(err).Message())
	}
	var raw map[string][]byte
	if len(req.Credentials) > 0 {
		b, err := json.Marshal(secretbox.SealCredentials(s.cfg.Box, tn, rt.Id, req.Credentials))
		if err != nil {
			return nil, status.Errorf(codes.Internal, "runtime %s credentials: %v", rt.Id, err)
		}
		raw = map[string][]byte{store.RuntimeCredentialsKey(tn, rt.Id): b}
	}
	if err := s.cfg.Store.CreateAll(ctx, map[string]proto.Message{store.RuntimeKey(tn, rt.Id): rt}, raw); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, status.Errorf(codes.AlreadyExists, "runtime %s exists", rt.Id)
		}
		return nil, toStatus(err)
	}
	s.log.Info("runtime created", "runtime", rt.Id, "provider", rt.Provider, "tenant", tn, "credential_keys", rt.CredentialKeys)
	return rt, nil
}

// ListRuntimes lists the tenant's runtimes.
func (s *Server) ListRuntimes(ctx context.Context, _ *pilotv1.ListRuntimesRequest) (*pilotv1.ListRuntimesResponse, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	rts, err := store.List(ctx, s.cfg.Store, store.TenantRuntimesPrefix(tn), func() *pilotv1.Runtime { return &pilotv1.Runtime{} })
	if err != nil {
		return nil, toStatus(err)
	}
	return &pilotv1.ListRuntimesResponse{Runtimes: rts}, nil
}

// GetRuntime returns one of the tenant's runtimes.
func (s *Server) GetRuntime(ctx context.Context, req *pilotv1.GetRuntimeRequest) (*pilotv1.Runtime, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	return s.findRuntime(ctx, tn, req.Id)
}

func (s *Server) findRuntime(ctx context.Context, tn, id string) (*pilotv1.Runtime, error) {
	rt := &pilotv1.Runtime{}
	// An id that is not a valid one cannot exist: answer as for a missing
	// one rather than let it shape a key.
	if !validID.MatchString(id) {
		return nil, notFoundRuntime(id)
	}
	if _, err := s.cfg.Store.Get(ctx, store.RuntimeKey(tn, id), rt); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFoundRuntime(id)
		}
		return nil, toStatus(err)
	}
	return rt, nil
}

func notFoundRuntime(id string) error {
	return status.Errorf(codes.NotFound, "runtime %s: not found; `hangar runtime list` shows the registered ones", id)
}
