package clusterops

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/store"
)

// Packages reads app packages from the store and keeps them parsed: a pushed
// version never changes (a different archive under the same version is
// refused), so a parse is good for the life of the process.
type Packages struct {
	st *store.Store

	mu sync.Mutex
	m  map[string]*apppkg.Package
}

// NewPackages returns an empty cache over st.
func NewPackages(st *store.Store) *Packages {
	return &Packages{st: st, m: map[string]*apppkg.Package{}}
}

// Get returns the parsed package of an app version.
func (p *Packages) Get(ctx context.Context, app, version string) (*apppkg.Package, error) {
	key := app + "/" + version
	p.mu.Lock()
	pkg, ok := p.m[key]
	p.mu.Unlock()
	if ok {
		return pkg, nil
	}
	raw, err := p.st.GetRaw(ctx, store.ArchiveKey(app, version))
	if err != nil {
		return nil, fmt.Errorf("load package %s %s: %w", app, version, err)
	}
	pkg, err = apppkg.LoadArchive(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("load package %s %s: %w", app, version, err)
	}
	p.mu.Lock()
	p.m[key] = pkg
	p.mu.Unlock()
	return pkg, nil
}

// Spec renders the cluster's spec from its package and stored parameters.
// Rendering is deterministic, so every handler sees the same spec.
func (p *Packages) Spec(ctx context.Context, c *pilotv1.Cluster) (*apppkg.Package, *apppkg.ClusterSpec, error) {
	pkg, err := p.Get(ctx, c.App, c.AppVersion)
	if err != nil {
		return nil, nil, err
	}
	vals, err := pkg.Resolve(c.Params)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s parameters: %w", c.Id, err)
	}
	spec, err := pkg.Render(vals)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s spec: %w", c.Id, err)
	}
	return pkg, spec, nil
}
