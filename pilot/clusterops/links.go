package clusterops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/store"
)

// Links (cluster.json's links {name: cluster id}, docs/appcenter-format.md
// §1.2, §3): a cluster's drones read the linked cluster's tree under
// /self/links/<name>/. The linked cluster may live in another network, and
// so in another frontgate's etcd, so pilot copies its tree into the linking
// cluster's: hosts, cluster (endpoints included) and env, without its
// password values (they are sealed with the linked cluster's own key, which
// the linking cluster's drones do not hold) and without its own links. The
// copy is taken whenever the linking cluster's metadata is registered, and
// the reconciler takes it again when a linked cluster's metadata changed
// (a scale, an env update) or it went away (the subtree is then emptied).
// The reconciler writes the links/ subtree alone (ApplyMetadataSubtree):
// a job that starts meanwhile and applies the whole tree (adding-hosts
// during a scale) is never overwritten by it, and the linking cluster's
// sealed values are not sealed again. Nor does it record a metadata
// revision, so the clusters linking to this one copy nothing again for it,
// and links that form a cycle settle.

// checkLinks refuses, before anything is created, a link to a cluster that
// is not there: every link spec names that old does not (nil old: every
// link) must name a cluster of the tenant that is not being deleted, of an
// app and version the service parameter giving it allows (limits), and
// other than self (the cluster changed; "" at create).
func (l *Lifecycle) checkLinks(ctx context.Context, tenant, self string, pkg *apppkg.Package, vals *apppkg.Values, spec, old *apppkg.ClusterSpec) error {
	names := make([]string, 0, len(spec.Links))
	for name := range spec.Links {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		id := spec.Links[name]
		if id == "" || (old != nil && old.Links[name] == id) {
			continue
		}
		if id == self {
			errs = append(errs, fmt.Errorf("links.%s: cluster %s cannot link to itself", name, id))
			continue
		}
		linked := &pilotv1.Cluster{}
		_, err := l.cfg.Store.Get(ctx, store.ClusterKey(id), linked)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && linked.Tenant != tenant):
			errs = append(errs, fmt.Errorf("links.%s: cluster %q does not exist; give the id of one of your clusters (`hangar cluster list`), or leave the parameter empty for no link", name, id))
			continue
		case err != nil:
			return err
		case linked.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING || linked.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DELETED:
			errs = append(errs, fmt.Errorf("links.%s: cluster %s is being deleted", name, id))
			continue
		}
		for _, it := range pkg.Config.Items() {
			if it.Type != apppkg.TypeService || len(it.Limits) == 0 {
				continue
			}
			if v, _ := vals.Get(it.Path); v != id {
				continue
			}
			versions, ok := it.Limits[linked.App]
			if !ok {
				apps := make([]string, 0, len(it.Limits))
				for a := range it.Limits {
					apps = append(apps, a)
				}
				sort.Strings(apps)
				errs = append(errs, fmt.Errorf("%s: cluster %s runs app %s; this parameter takes a cluster of: %s", it.Path, id, linked.App, strings.Join(apps, ", ")))
			} else if len(versions) > 0 && !contains(versions, linked.AppVersion) {
				errs = append(errs, fmt.Errorf("%s: cluster %s runs %s %s; this parameter takes versions: %s", it.Path, id, linked.App, linked.AppVersion, strings.Join(versions, ", ")))
			}
		}
	}
	if len(errs) > 0 {
		return refuse(Invalid, "%v", errors.Join(errs...))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// linked is a link of a cluster and the cluster it names (nil: gone).
type linked struct {
	name, id string
	c        *pilotv1.Cluster
}

// linkedClusters reads the clusters spec links to, and a fingerprint of
// what a copy of their trees is built from: their metadata revisions and
// jobs.
func (o *Ops) linkedClusters(ctx context.Context, spec *apppkg.ClusterSpec) ([]linked, string, error) {
	names := make([]string, 0, len(spec.Links))
	for name, id := range spec.Links {
		if id != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []linked
	var print strings.Builder
	for _, name := range names {
		l := linked{name: name, id: spec.Links[name], c: &pilotv1.Cluster{}}
		_, err := o.cfg.Store.Get(ctx, store.ClusterKey(l.id), l.c)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && (l.c.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DELETED || l.c.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING)):
			l.c = nil
			fmt.Fprintf(&print, "%s=%s:gone;", name, l.id)
		case err != nil:
			return nil, "", fmt.Errorf("link %s: cluster %s: %w", name, l.id, err)
		default:
			fmt.Fprintf(&print, "%s=%s:%d:%s;", name, l.id, l.c.MetadataRevision, l.c.JobId)
		}
		out = append(out, l)
	}
	return out, print.String(), nil
}

// linkTrees returns, for each link of spec, the tree the linking cluster's
// drones read under links/<name>/ (see above); a link to a cluster that is
// gone gets none.
func (o *Ops) linkTrees(ctx context.Context, spec *apppkg.ClusterSpec) (map[string]map[string]string, string, error) {
	links, print, err := o.linkedClusters(ctx, spec)
	if err != nil || len(links) == 0 {
		return nil, print, err
	}
	trees := map[string]map[string]string{}
	for _, l := range links {
		if l.c == nil {
			continue
		}
		pkg, lspec, err := o.cfg.Packages.Current(ctx, l.c)
		if err != nil {
			return nil, "", fmt.Errorf("link %s: cluster %s: %w", l.name, l.id, err)
		}
		tree, err := metadataTree(l.c, nil, pkg, lspec, o.cfg.Packages.Box, nil, nil)
		if err != nil {
			return nil, "", fmt.Errorf("link %s: %w", l.name, err)
		}
		for k, v := range tree {
			if strings.HasPrefix(k, "links/") || secretbox.IsSealed(v) {
				delete(tree, k)
			}
		}
		trees[l.name] = tree
	}
	return trees, print, nil
}

// linksUnder is the subtree of a cluster's tree that holds its links.
const linksUnder = "links/"

// refreshLinks copies into c's metadata again, under links/ alone, the
// trees of the clusters spec links to, when what they are copied from
// changed since print (the fingerprint the last copy was taken at; ""
// when unknown). It answers the fingerprint now.
func (o *Ops) refreshLinks(ctx context.Context, c *pilotv1.Cluster, spec *apppkg.ClusterSpec, print string) (string, error) {
	links, now, err := o.linkedClusters(ctx, spec)
	if err != nil || now == print {
		return print, err
	}
	for _, l := range links {
		if l.c == nil {
			o.log.Warn("linked cluster gone; the link's subtree is emptied", "cluster_id", c.Id, "link", l.name, "linked_cluster_id", l.id)
		}
	}
	trees, now, err := o.linkTrees(ctx, spec)
	if err != nil {
		return print, err
	}
	n, err := o.network(ctx, c)
	if err != nil {
		return print, err
	}
	// The tree as metatree lays it out, of which only links/ is sent.
	tree, err := metadataTree(c, n, nil, spec, nil, nil, &treeExtras{Links: trees})
	if err != nil {
		return print, err
	}
	sub := map[string]string{}
	for k, v := range tree {
		if strings.HasPrefix(k, linksUnder) {
			sub[k] = v
		}
	}
	req := &streamv1.ApplyMetadataSubtree{ClusterId: c.Id, Under: linksUnder, Kvs: sub}
	if _, err := o.callFrontgate(ctx, n, &streamv1.Request{Body: &streamv1.Request_ApplyMetadataSubtree{ApplyMetadataSubtree: req}}); err != nil {
		return print, fmt.Errorf("copy the linked clusters' metadata into cluster %s: %w", c.Id, err)
	}
	o.log.Info("linked clusters' metadata copied again", "cluster_id", c.Id, "links", now)
	return now, nil
}
