package clusterops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/store"
)

// Packages reads app packages from the store and keeps them parsed: a pushed
// version never changes (a different archive under the same version is
// refused), so a parse is good as long as its archive is there (a version
// no cluster uses may be deleted and pushed anew). It also renders
// cluster specs, and keeps the one each job was planned with (JobSpec).
type Packages struct {
	// Box is pilot's master secret box: password parameters are stored
	// sealed with it, and each cluster's metadata key derives from it.
	// Set it before first use; nil (tests) means values are not sealed.
	Box *secretbox.Box

	st *store.Store

	mu sync.Mutex
	m  map[string]cachedPackage

	// renders counts the cluster specs rendered: once per accepted change,
	// which tests hold pilot to.
	renders atomic.Int64
}

// NewPackages returns an empty cache over st.
func NewPackages(st *store.Store) *Packages {
	return &Packages{st: st, m: map[string]cachedPackage{}}
}

// Get returns the parsed package of a tenant's app version (two tenants may
// push different packages under the same name and version).
func (p *Packages) Get(ctx context.Context, tenant, app, version string) (*apppkg.Package, error) {
	p.mu.Lock()
	c, ok := p.m[cacheKey(tenant, app, version)]
	p.mu.Unlock()
	if ok {
		return c.pkg, nil
	}
	pkg, _, err := p.GetAt(ctx, tenant, app, version)
	return pkg, err
}

// Forget drops the parse of a version, which was deleted: one pushed
// again under its name is parsed anew. (GetAt checks the archive's
// revision anyway; this spares Get a stale parse on this pilot.)
func (p *Packages) Forget(tenant, app, version string) {
	p.mu.Lock()
	delete(p.m, cacheKey(tenant, app, version))
	p.mu.Unlock()
}

func cacheKey(tenant, app, version string) string {
	if tenant == "" { // every stored cluster has one; tests may not
		return app + "/" + version
	}
	return tenant + "/" + app + "/" + version
}

// GetAt is Get that also returns the mod revision of the package's archive:
// a change that commits a cluster on the package guards that revision, so
// it fails if the version was deleted (DeleteApp) in between. A version
// may be deleted and pushed again with other contents, so the parse is
// kept per archive revision.
func (p *Packages) GetAt(ctx context.Context, tenant, app, version string) (*apppkg.Package, int64, error) {
	key := cacheKey(tenant, app, version)
	archiveKey := store.ArchiveKey(tenant, app, version)
	rev, err := p.st.Revision(ctx, archiveKey)
	if err != nil {
		return nil, 0, fmt.Errorf("load package %s %s: %w", app, version, err)
	}
	p.mu.Lock()
	c, ok := p.m[key]
	p.mu.Unlock()
	if ok && c.rev == rev {
		return c.pkg, rev, nil
	}
	raw, rev, err := p.st.GetRawRev(ctx, archiveKey)
	if err != nil {
		return nil, 0, fmt.Errorf("load package %s %s: %w", app, version, err)
	}
	// A package without package.json is named by the catalog.
	pkg, err := apppkg.LoadArchiveWith(bytes.NewReader(raw), apppkg.LoadOptions{Name: app, Version: version})
	if err != nil {
		return nil, 0, fmt.Errorf("load package %s %s: %w", app, version, err)
	}
	p.mu.Lock()
	p.m[key] = cachedPackage{pkg: pkg, rev: rev}
	p.mu.Unlock()
	return pkg, rev, nil
}

// cachedPackage is a parsed package and the archive revision it came from.
type cachedPackage struct {
	pkg *apppkg.Package
	rev int64
}

// render renders a cluster spec: every render of pilot goes through here.
func (p *Packages) render(pkg *apppkg.Package, vals *apppkg.Values) (*apppkg.ClusterSpec, error) {
	p.renders.Add(1)
	return pkg.Render(vals)
}

// Spec renders the cluster's spec from its package and stored parameters
// (password parameters are opened first). A change renders its spec once
// and stores it with its job (JobSpec); this is for clusters whose job
// has none.
func (p *Packages) Spec(ctx context.Context, c *pilotv1.Cluster) (*apppkg.Package, *apppkg.ClusterSpec, error) {
	pkg, err := p.Get(ctx, c.Tenant, c.App, c.AppVersion)
	if err != nil {
		return nil, nil, err
	}
	params, err := secretbox.OpenParams(p.Box, c.Id, c.Params, SecretParam(pkg))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s parameters: %w", c.Id, err)
	}
	vals, err := pkg.Resolve(params)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s parameters: %w", c.Id, err)
	}
	spec, err := p.render(pkg, vals)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s spec: %w", c.Id, err)
	}
	return pkg, spec, nil
}

// Current returns the cluster's package and the spec it runs now: the one
// its last job stored, else its package rendered from its parameters.
func (p *Packages) Current(ctx context.Context, c *pilotv1.Cluster) (*apppkg.Package, *apppkg.ClusterSpec, error) {
	if c.JobId != "" {
		spec, _, err := p.JobSpec(ctx, c.JobId)
		if err == nil {
			pkg, err := p.Get(ctx, c.Tenant, c.App, c.AppVersion)
			return pkg, spec, err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, nil, err
		}
	}
	return p.Spec(ctx, c)
}

// SecretParam reports which parameter paths of pkg are passwords: the ones
// stored sealed (secretbox.SealParams) and sealed in the metadata tree.
func SecretParam(pkg *apppkg.Package) func(path string) bool {
	return func(path string) bool {
		if pkg == nil || pkg.Config == nil {
			return false
		}
		it, ok := pkg.Config.Item(path)
		return ok && it.Type == apppkg.TypePassword
	}
}

// sealSpec is the form a job's spec is stored in under key: sealed with
// the master box (the rendered spec holds the parameters' values,
// passwords included), bound to its key; clear without a box (tests).
func (p *Packages) sealSpec(key string, stored []byte) []byte {
	if p.Box == nil {
		return stored
	}
	return []byte(p.Box.Seal(string(stored), key))
}

// JobSpec reads the spec a job was planned with, stored with it when the
// change was accepted, and its stored form (apppkg.ClusterSpec.Stored).
func (p *Packages) JobSpec(ctx context.Context, jobID string) (*apppkg.ClusterSpec, []byte, error) {
	return p.specAt(ctx, jobID, store.JobSpecKey(jobID))
}

// JobPriorSpec reads the spec the cluster had before job jobID changed its
// app version.
func (p *Packages) JobPriorSpec(ctx context.Context, jobID string) (*apppkg.ClusterSpec, error) {
	spec, _, err := p.specAt(ctx, jobID, store.JobPriorSpecKey(jobID))
	return spec, err
}

func (p *Packages) specAt(ctx context.Context, jobID, key string) (*apppkg.ClusterSpec, []byte, error) {
	raw, err := p.st.GetRaw(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("spec of job %s: %w", jobID, err)
	}
	if secretbox.IsSealed(string(raw)) {
		clear, err := p.Box.Open(string(raw), key)
		if err != nil {
			return nil, nil, fmt.Errorf("spec of job %s: %w", jobID, err)
		}
		raw = []byte(clear)
	}
	spec, err := apppkg.DecodeStored(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("spec of job %s: %w", jobID, err)
	}
	return spec, raw, nil
}

// LastJobs returns what job retention must keep (jobs.Retention.Pinned):
// each cluster's last job, whose stored spec is the one the cluster runs
// (Current) and whose state tells whether a job is still changing it.
func LastJobs(st *store.Store) func(ctx context.Context) (map[string]bool, error) {
	return func(ctx context.Context) (map[string]bool, error) {
		clusters, err := store.List(ctx, st, store.ClustersPrefix, newCluster)
		if err != nil {
			return nil, fmt.Errorf("list clusters: %w", err)
		}
		keep := make(map[string]bool, len(clusters))
		for _, c := range clusters {
			if c.JobId != "" {
				keep[c.JobId] = true
			}
		}
		return keep, nil
	}
}
