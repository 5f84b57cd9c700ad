package clusterops

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/metatree"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// The cluster's metadata in its frontgate's etcd (the AppCenter tree the
// drones render from): built from the cluster record and the job's spec,
// password values sealed, applied whole in one transaction, deleted with
// the cluster.

// gsid is a stable 9-digit id per node (AppCenter's global server id).
func gsid(nodeID string) string {
	h := fnv.New32a()
	h.Write([]byte(nodeID))
	return strconv.Itoa(100000000 + int(h.Sum32()%900000000))
}

// MetadataTree builds the cluster's metadata from its record and spec. With
// a master box, the env values of password parameters are sealed with the
// cluster's metadata key (box.Metadata), bound to their etcd key, so no
// frontgate etcd holds them in clear; the cluster's drones get that key
// (deliverConfd) and open them. pkg gives the parameters' types; a nil box
// (tests) leaves every value clear.
func MetadataTree(c *pilotv1.Cluster, n *pilotv1.Network, pkg *apppkg.Package, spec *apppkg.ClusterSpec, box *secretbox.Box) (map[string]string, error) {
	return metadataTree(c, n, pkg, spec, box, nil, nil)
}

// metadataTree is MetadataTree during an operation: the nodes of in's
// adding_node_ids are also listed under adding-hosts (scale-out), those of
// deleting_node_ids under deleting-hosts (scale-in; they stay under hosts
// too, as AppCenter's do), its vertical_scaling_roles under
// vertical-scaling-roles; and while an upgrade runs (c.upgrading_from),
// upgrade-audit. in may be nil. x adds what is read from elsewhere than
// the cluster's record (nil: nothing).
func metadataTree(c *pilotv1.Cluster, n *pilotv1.Network, pkg *apppkg.Package, spec *apppkg.ClusterSpec, box *secretbox.Box, in *pilotv1.TaskInput, x *treeExtras) (map[string]string, error) {
	var hosts []metatree.Host
	opts := metatree.Options{VerticalScalingRoles: in.GetVerticalScalingRoles(), Links: x.links()}
	if c.UpgradingFrom != "" {
		opts.UpgradeAudit = &metatree.UpgradeAudit{FromAppVersion: c.UpgradingFrom, ToAppVersion: c.AppVersion}
	}
	for _, nd := range c.Nodes {
		if nd.InstanceId == "" {
			continue
		}
		h := metatree.Host{NodeID: nd.Id, InstanceID: nd.InstanceId, Role: nd.Role, IP: nd.Address, SID: int(nd.Sid), GID: int(nd.Sid), GSID: gsid(nd.Id), Token: nd.Token, PubKey: x.pubKey(nd.Role), ReservedIPs: nd.ReservedIps}
		if r := roleSpec(spec, nd.Role); r != nil {
			h.CPU, h.Memory, h.GPU, h.VolumeSize, h.InstanceClass = r.CPU, r.Memory, r.GPU, volumeSize(r), r.InstanceClass
		}
		// A resized node has its own sizes.
		h.CPU, h.Memory, h.VolumeSize = orInt(nd.Cpu, h.CPU), orInt(nd.MemoryMib, h.Memory), orInt(nd.VolumeGib, h.VolumeSize)
		hosts = append(hosts, h)
		if slices.Contains(in.GetAddingNodeIds(), nd.Id) {
			opts.Adding = append(opts.Adding, h)
		}
		if slices.Contains(in.GetDeletingNodeIds(), nd.Id) {
			opts.Deleting = append(opts.Deleting, h)
		}
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].SID < hosts[j].SID })
	info := metatree.Cluster{ClusterID: c.Id, AppID: c.App, AppVersion: c.AppVersion, UserID: "", Zone: "", VXNet: c.NetworkId, GlobalUUID: c.Id, ReservedIPs: c.ReservedIps}
	if n != nil {
		info.VXNet = n.Id
	}
	tree := metatree.Build(info, spec, hosts, opts)
	if box == nil || pkg == nil {
		return tree, nil
	}
	if err := sealSecretEnv(tree, c, pkg, box); err != nil {
		return nil, fmt.Errorf("metadata of cluster %s: %w", c.Id, err)
	}
	return tree, nil
}

// treeExtras is what a cluster's tree holds from elsewhere than its
// record: the linked clusters' trees, by link name (linkTrees), and the
// public keys of its passphraseless roles, by role (sshPublicKeys).
type treeExtras struct {
	Links   map[string]map[string]string
	PubKeys map[string]string
}

func (x *treeExtras) links() map[string]map[string]string {
	if x == nil {
		return nil
	}
	return x.Links
}

func (x *treeExtras) pubKey(role string) string {
	if x == nil {
		return ""
	}
	return x.PubKeys[role]
}

// extras reads c's treeExtras for spec.
func (o *Ops) extras(ctx context.Context, c *pilotv1.Cluster, spec *apppkg.ClusterSpec) (*treeExtras, string, error) {
	links, print, err := o.linkTrees(ctx, spec)
	if err != nil {
		return nil, "", err
	}
	keys, err := o.sshPublicKeys(ctx, c, spec)
	if err != nil {
		return nil, "", err
	}
	return &treeExtras{Links: links, PubKeys: keys}, print, nil
}

// sealSecretEnv seals the env values of tree (env/<key> and
// roles/<role>/env/<key>) that hold a password: those whose key is a
// password parameter of config.json, and, since cluster.json may publish a
// password under another env name, those equal to a password's value.
func sealSecretEnv(tree map[string]string, c *pilotv1.Cluster, pkg *apppkg.Package, box *secretbox.Box) error {
	secret := SecretParam(pkg)
	params, err := secretbox.OpenParams(box, c.Id, c.Params, secret)
	if err != nil {
		return err
	}
	vals, err := pkg.Resolve(params)
	if err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	passwords := map[string]bool{}
	for _, it := range pkg.Config.Items() {
		if it.Type != apppkg.TypePassword {
			continue
		}
		if v, ok := vals.Get(it.Path); ok {
			if s, _ := v.(string); s != "" {
				passwords[s] = true
			}
		}
	}
	mbox, err := box.Metadata(c.Id)
	if err != nil {
		return err
	}
	// The drone opens a value with its etcd key as associated data, so a
	// value moved to another key or cluster does not open.
	prefix := "/clusters/" + c.Id + "/"
	for k, v := range tree {
		role, name, ok := envLeaf(k)
		if !ok {
			continue
		}
		if passwords[v] || secret(apppkg.GroupEnv+"."+name) || (role != "" && secret(apppkg.GroupEnv+"."+role+"."+name)) {
			tree[k] = mbox.Seal(v, prefix+k)
		}
	}
	return nil
}

// envLeaf parses an env key of the tree: "env/<name>" (role "") or
// "roles/<role>/env/<name>", with metatree's "%2F" escape undone.
func envLeaf(k string) (role, name string, ok bool) {
	unescape := func(s string) string { return strings.ReplaceAll(s, "%2F", "/") }
	if name, ok := strings.CutPrefix(k, "env/"); ok && name != "" {
		return "", unescape(name), true
	}
	parts := strings.SplitN(k, "/", 4)
	if len(parts) == 4 && parts[0] == "roles" && parts[2] == "env" && parts[3] != "" {
		return unescape(parts[1]), unescape(parts[3]), true
	}
	return "", "", false
}

func (o *Ops) registerMetadata(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec|needPackage)
	if err != nil {
		return err
	}
	c, n := tc.c, tc.n
	x, _, err := o.extras(ctx, c, tc.spec)
	if err != nil {
		return err
	}
	kvs, err := metadataTree(c, n, tc.pkg, tc.spec, o.cfg.Packages.Box, tc.in, x)
	if err != nil {
		return err
	}
	resp, err := o.callFrontgate(ctx, n, &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: c.Id, Kvs: kvs, ReaderNodeIds: readers(c)}}})
	if err != nil {
		return fmt.Errorf("apply metadata of cluster %s: %w", c.Id, err)
	}
	// The revision drones must have rendered to be current (waitRendered,
	// cluster show).
	if rev := resp.GetAck().GetRevision(); rev != 0 {
		if _, err := o.updateCluster(ctx, c.Id, func(c *pilotv1.Cluster) error {
			if c.MetadataRevision == rev {
				return store.ErrNoChange
			}
			c.MetadataRevision = rev
			return nil
		}); err != nil {
			return fmt.Errorf("record the metadata revision of cluster %s: %w", c.Id, err)
		}
	}
	return nil
}

// metadataChanges are the keys of c's metadata tree that spec would add,
// remove or change against old, for a dry run: "+key=value", "-key",
// "~key: old → new", sorted, password values redacted.
func metadataChanges(c *pilotv1.Cluster, pkg *apppkg.Package, old, spec *apppkg.ClusterSpec) []string {
	before, _ := metadataTree(c, nil, pkg, old, nil, nil, nil)
	after, _ := metadataTree(c, nil, pkg, spec, nil, nil, nil)
	secret := SecretParam(pkg)
	shown := func(k, v string) string {
		if role, name, ok := envLeaf(k); ok && (secret(apppkg.GroupEnv+"."+name) || (role != "" && secret(apppkg.GroupEnv+"."+role+"."+name))) {
			return Redacted
		}
		return v
	}
	var out []string
	for k, v := range after {
		switch ov, ok := before[k]; {
		case !ok:
			out = append(out, "+"+k+"="+shown(k, v))
		case ov != v:
			out = append(out, "~"+k+": "+shown(k, ov)+" → "+shown(k, v))
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out = append(out, "-"+k)
		}
	}
	sort.Strings(out)
	return out
}

// orInt is v when set, else def.
func orInt(v int32, def int) int {
	if v > 0 {
		return int(v)
	}
	return def
}

// readers are the nodes whose drones may read the cluster's metadata: its
// own. (A linked cluster's tree is copied into the linking cluster's, which
// its own drones read.)
func readers(c *pilotv1.Cluster) []string {
	out := make([]string, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		if n.InstanceId != "" {
			out = append(out, n.Id)
		}
	}
	return out
}

func (o *Ops) deleteMetadata(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, 0)
	if err != nil {
		return err
	}
	c := tc.c
	// No network or no frontgate: the metadata was never registered, or
	// went with them.
	n, err := o.network(ctx, c)
	if c.NetworkId == "" || errors.Is(err, store.ErrNotFound) || (err == nil && n.FrontgateInstanceId == "") {
		return nil
	}
	if err != nil {
		return err
	}
	cctx, cancel := forcedContext(ctx, tc.in.Force)
	defer cancel()
	_, err = o.callFrontgate(cctx, n, &streamv1.Request{Body: &streamv1.Request_DeleteMetadata{DeleteMetadata: &streamv1.DeleteMetadata{ClusterId: c.Id}}})
	if err != nil && tc.in.Force {
		// The frontgate goes with its network when this is the last
		// cluster; otherwise its metadata is orphaned until then. Say so.
		o.log.Warn("forced: metadata not deleted; its frontgate is unreachable", "cluster_id", c.Id, "frontgate_id", n.FrontgateId, "err", err)
		return nil
	}
	return err
}
