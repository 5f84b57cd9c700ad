// Package metatree builds the AppCenter metadata tree of one cluster: the
// key/value map frontgate stores under /clusters/<cluster_id>/ and drones
// read through confd (docs/design.md §3, docs/appcenter-format.md §3).
//
// Keys are relative to the cluster's prefix and values are strings, as
// every metadata leaf is a string:
//
//	hosts/<role>/<instance_id>/<field>      one entry per node (hosts/<instance_id>/… when role is "")
//	cluster/{app_id, app_version, cluster_id, user_id, global_uuid, vxnet, zone}
//	cluster/endpoints/<svc>/{port, protocol}
//	cluster/endpoints/reserved_ips/<name>/value
//	cluster/upgrade-audit/{from_app_version, to_app_version} and upgrade-audit/… (during an upgrade)
//	env/<key>                                the cluster env
//	roles/<role>/env/<key>                   a role's own env
//	links/<name>/…                           a linked cluster's tree, as given
//	adding-hosts/[<role>/]<instance_id>/…    scale-out only
//	deleting-hosts/[<role>/]<instance_id>/…  scale-in only
//	vertical-scaling-roles                   during vertical scaling
//
// env/ holds the cluster env. A role's env lives apart, under
// roles/<role>/env/, and the drone merges it over env/ for the nodes of that
// role when it builds the /self view, role values winning; so one tree
// serves every role and a role's env change touches only its own keys. A
// role-less app has no roles/ subtree: its node env applies to every node
// and is merged into env/ here, node values winning.
// Host fields are: ip, eip, mac, sid, gid, gsid, node_id, instance_id, cpu,
// gpu, memory, volume_size, instance_class, gpu_class, volume_class,
// physical_machine, role, and when set pub_key, token and
// reserved_ips/<name>/value.
package metatree

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hangarhq/hangar/internal/apppkg"
)

// Host is one node of the cluster.
type Host struct {
	NodeID     string // cln-…, stable for the node's life
	InstanceID string // may change on each cluster start
	Role       string // "" for a role-less app
	IP         string
	EIP        string
	MAC        string
	SID        int    // from 1, unique in the cluster
	GID        int    // shared by a primary and its replicas
	GSID       string // globally unique
	CPU        int
	Memory     int // MiB
	GPU        int
	GPUClass   int
	VolumeSize int // GiB
	// InstanceClass and VolumeClass are the provider's classes.
	InstanceClass   int
	VolumeClass     int
	PhysicalMachine string
	PubKey          string            // written only when set
	Token           string            // custom_metadata output; written only when set
	ReservedIPs     map[string]string // name -> address
}

// Cluster identifies the cluster and where it runs.
type Cluster struct {
	ClusterID, AppID, AppVersion, UserID, Zone, VXNet, GlobalUUID string
	// Endpoints, when not nil, replaces the rendered spec's endpoints.
	Endpoints map[string]apppkg.Endpoint
	// ReservedIPs are the addresses reserved for the cluster's
	// endpoints.reserved_ips, by name.
	ReservedIPs map[string]string
}

// UpgradeAudit is published while an upgrade runs.
type UpgradeAudit struct {
	FromAppVersion, ToAppVersion string
}

// Options adds the parts of the tree that exist only during an operation.
type Options struct {
	Adding, Deleting []Host
	// Links maps a link name to the linked cluster's tree (as Build
	// returned it for that cluster); only names the spec links are used.
	Links                map[string]map[string]string
	VerticalScalingRoles []string
	UpgradeAudit         *UpgradeAudit
}

// Build returns the tree of a cluster. Inputs should pass Validate first:
// Build never fails, and escapes a '/' inside an id or key as "%2F" rather
// than let it split a path.
func Build(c Cluster, spec *apppkg.ClusterSpec, hosts []Host, opts Options) map[string]string {
	t := map[string]string{}
	for _, h := range hosts {
		putHost(t, "hosts", h)
	}
	for _, h := range opts.Adding {
		putHost(t, "adding-hosts", h)
	}
	for _, h := range opts.Deleting {
		putHost(t, "deleting-hosts", h)
	}

	cl := map[string]string{
		"app_id": c.AppID, "app_version": c.AppVersion, "cluster_id": c.ClusterID,
		"user_id": c.UserID, "global_uuid": c.GlobalUUID, "vxnet": c.VXNet, "zone": c.Zone,
	}
	for k, v := range cl {
		t["cluster/"+k] = v
	}
	endpoints := c.Endpoints
	if endpoints == nil && spec != nil {
		endpoints = spec.Endpoints
	}
	for name, e := range endpoints {
		p := "cluster/endpoints/" + seg(name) + "/"
		t[p+"port"] = port(spec, name, e)
		t[p+"protocol"] = e.Protocol
	}
	for name, ip := range c.ReservedIPs {
		t["cluster/endpoints/reserved_ips/"+seg(name)+"/value"] = ip
	}
	if a := opts.UpgradeAudit; a != nil {
		// The format documents these under cluster/, but ZooKeeper's
		// package reads them at the root; publish both.
		for _, prefix := range []string{"cluster/upgrade-audit/", "upgrade-audit/"} {
			t[prefix+"from_app_version"] = a.FromAppVersion
			t[prefix+"to_app_version"] = a.ToAppVersion
		}
	}
	if len(opts.VerticalScalingRoles) > 0 {
		t["vertical-scaling-roles"] = strings.Join(opts.VerticalScalingRoles, ",")
	}

	if spec != nil {
		for k, v := range spec.Env {
			t["env/"+seg(k)] = v
		}
		for _, n := range spec.Nodes {
			for k, v := range n.Env {
				if n.Role == "" {
					// Every node of a role-less app has this env, so it is
					// merged here, node values winning, as the drone would.
					t["env/"+seg(k)] = v
					continue
				}
				t[RoleEnvPrefix(n.Role)+seg(k)] = v
			}
		}
		for name, id := range spec.Links {
			tree, ok := opts.Links[name]
			if id == "" || !ok {
				continue
			}
			for k, v := range tree {
				t["links/"+seg(name)+"/"+k] = v
			}
		}
	}
	return t
}

// RoleEnvPrefix returns the relative prefix of a role's own env, which the
// drone merges over env/ for nodes of that role.
func RoleEnvPrefix(role string) string {
	return "roles/" + seg(role) + "/env/"
}

// HostPrefix returns the relative prefix of a host's entry under group
// ("hosts", "adding-hosts" or "deleting-hosts").
func HostPrefix(group, role, instanceID string) string {
	if role == "" {
		return group + "/" + seg(instanceID) + "/"
	}
	return group + "/" + seg(role) + "/" + seg(instanceID) + "/"
}

func putHost(t map[string]string, group string, h Host) {
	p := HostPrefix(group, h.Role, h.InstanceID)
	for k, v := range HostFields(h) {
		t[p+k] = v
	}
}

// HostFields returns a host's entry, relative to its prefix; the drone
// publishes its own as /self/host/….
func HostFields(h Host) map[string]string {
	f := map[string]string{
		"ip": h.IP, "eip": h.EIP, "mac": h.MAC,
		"sid": strconv.Itoa(h.SID), "gid": strconv.Itoa(h.GID), "gsid": h.GSID,
		"node_id": h.NodeID, "instance_id": h.InstanceID, "role": h.Role,
		"cpu": strconv.Itoa(h.CPU), "gpu": strconv.Itoa(h.GPU), "memory": strconv.Itoa(h.Memory),
		"volume_size": strconv.Itoa(h.VolumeSize), "instance_class": strconv.Itoa(h.InstanceClass),
		"gpu_class": strconv.Itoa(h.GPUClass), "volume_class": strconv.Itoa(h.VolumeClass),
		"physical_machine": h.PhysicalMachine,
	}
	if h.PubKey != "" {
		f["pub_key"] = h.PubKey
	}
	if h.Token != "" {
		f["token"] = h.Token
	}
	for name, ip := range h.ReservedIPs {
		f["reserved_ips/"+seg(name)+"/value"] = ip
	}
	return f
}

func port(spec *apppkg.ClusterSpec, name string, e apppkg.Endpoint) string {
	if e.Port.Ref == "" {
		return strconv.Itoa(e.Port.Number)
	}
	if spec != nil {
		if p, err := spec.EndpointPort(name); err == nil {
			return p
		}
	}
	// An unresolvable reference was refused when the spec was rendered;
	// keep the reference visible rather than invent a port.
	return e.Port.Ref
}

// seg keeps a name inside one path segment.
func seg(s string) string {
	return strings.ReplaceAll(s, "/", "%2F")
}

// Validate checks that every id and name becomes a proper path segment,
// that instance ids are unique among hosts, and that adding and deleting
// hosts are hosts of the cluster (both stay in hosts/ during the operation).
func Validate(c Cluster, hosts []Host, opts Options) error {
	var errs []string
	check := func(what, v string) {
		if v == "" || strings.ContainsAny(v, "/\x00") || v == "." || v == ".." {
			errs = append(errs, fmt.Sprintf("%s %q: must be non-empty and without '/'", what, v))
		}
	}
	check("cluster_id", c.ClusterID)
	seen := map[string]bool{}
	for i, h := range hosts {
		check(fmt.Sprintf("hosts[%d].instance_id", i), h.InstanceID)
		check(fmt.Sprintf("hosts[%d].node_id", i), h.NodeID)
		if h.Role != "" {
			check(fmt.Sprintf("hosts[%d].role", i), h.Role)
		}
		if seen[h.InstanceID] {
			errs = append(errs, fmt.Sprintf("hosts[%d].instance_id %q: appears twice", i, h.InstanceID))
		}
		seen[h.InstanceID] = true
	}
	for _, group := range []struct {
		name  string
		hosts []Host
	}{{"adding", opts.Adding}, {"deleting", opts.Deleting}} {
		for i, h := range group.hosts {
			if !seen[h.InstanceID] {
				errs = append(errs, fmt.Sprintf("%s[%d].instance_id %q: not among the cluster's hosts", group.name, i, h.InstanceID))
			}
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("metadata tree: %s", strings.Join(errs, "; "))
	}
	return nil
}
