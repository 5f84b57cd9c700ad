package metatree

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/internal/apppkg"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hostEntry is the expected entry of a host, written out in full: the
// field list is part of the contract with app templates.
func hostEntry(prefix string, f map[string]string) map[string]string {
	out := map[string]string{}
	defaults := map[string]string{
		"ip": "", "eip": "", "mac": "", "sid": "0", "gid": "0", "gsid": "", "node_id": "", "instance_id": "",
		"role": "", "cpu": "0", "gpu": "0", "memory": "0", "volume_size": "0", "instance_class": "0",
		"gpu_class": "0", "volume_class": "0", "physical_machine": "",
	}
	for k, v := range defaults {
		out[prefix+k] = v
	}
	for k, v := range f {
		out[prefix+k] = v
	}
	return out
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func diff(t *testing.T, got, want map[string]string) {
	t.Helper()
	var problems []string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			problems = append(problems, "missing "+k+" = "+v)
		case g != v:
			problems = append(problems, "wrong "+k+" = "+g+", want "+v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			problems = append(problems, "unexpected "+k+" = "+v)
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Fatalf("tree differs:\n%s", strings.Join(problems, "\n"))
	}
}

var (
	master = Host{NodeID: "cln-m1", InstanceID: "i-m1", Role: "master", IP: "10.0.0.2", MAC: "52:54:00:00:00:02",
		SID: 1, GID: 1, GSID: "100000001", CPU: 2, Memory: 2048, VolumeSize: 10, InstanceClass: 1,
		PubKey: "ssh-rsa AAAA", ReservedIPs: map[string]string{"write": "10.0.0.200"}}
	replica1 = Host{NodeID: "cln-r1", InstanceID: "i-r1", Role: "replica", IP: "10.0.0.3", SID: 2, GID: 1,
		GSID: "100000002", CPU: 1, Memory: 1024}
	replica2 = Host{NodeID: "cln-r2", InstanceID: "i-r2", Role: "replica", IP: "10.0.0.4", SID: 3, GID: 1,
		GSID: "100000003", CPU: 1, Memory: 1024, Token: "tok-2"}
)

func twoRoleSpec() *apppkg.ClusterSpec {
	return &apppkg.ClusterSpec{
		Name:  "kv",
		Links: map[string]string{"zk": "cl-zk", "unused": ""},
		Env:   apppkg.Env{"port": "6379", "maxmemory": "1gb", "4lw.commands.whitelist": "srvr,ruok"},
		Endpoints: map[string]apppkg.Endpoint{
			"client":  {Port: apppkg.Port{Ref: "env.port"}, Protocol: "tcp"},
			"metrics": {Port: apppkg.Port{Number: 9121}, Protocol: "http"},
		},
		Nodes: []apppkg.NodeSpec{
			{Role: "master", Count: 1},
			{Role: "replica", Count: 2, Env: apppkg.Env{"lag": "10", "maxmemory": "512mb"}},
		},
	}
}

func TestBuildTwoRoles(t *testing.T) {
	c := Cluster{ClusterID: "cl-1", AppID: "app-kv", AppVersion: "appv-1", UserID: "usr-1", Zone: "z1",
		VXNet: "vxnet-1", GlobalUUID: "8d3c", ReservedIPs: map[string]string{"vip": "10.0.0.250"}}
	hosts := []Host{master, replica1, replica2}
	opts := Options{
		Adding: []Host{replica2},
		Links: map[string]map[string]string{
			"zk":    {"cluster/cluster_id": "cl-zk", "hosts/i-z1/ip": "10.1.0.2"},
			"other": {"cluster/cluster_id": "cl-x"}, // not linked by the spec: left out
		},
	}
	if err := Validate(c, hosts, opts); err != nil {
		t.Fatal(err)
	}
	got := Build(c, twoRoleSpec(), hosts, opts)

	want := merge(
		hostEntry("hosts/master/i-m1/", map[string]string{"node_id": "cln-m1", "instance_id": "i-m1", "role": "master",
			"ip": "10.0.0.2", "mac": "52:54:00:00:00:02", "sid": "1", "gid": "1", "gsid": "100000001", "cpu": "2",
			"memory": "2048", "volume_size": "10", "instance_class": "1", "pub_key": "ssh-rsa AAAA",
			"reserved_ips/write/value": "10.0.0.200"}),
		hostEntry("hosts/replica/i-r1/", map[string]string{"node_id": "cln-r1", "instance_id": "i-r1", "role": "replica",
			"ip": "10.0.0.3", "sid": "2", "gid": "1", "gsid": "100000002", "cpu": "1", "memory": "1024"}),
		hostEntry("hosts/replica/i-r2/", map[string]string{"node_id": "cln-r2", "instance_id": "i-r2", "role": "replica",
			"ip": "10.0.0.4", "sid": "3", "gid": "1", "gsid": "100000003", "cpu": "1", "memory": "1024", "token": "tok-2"}),
		hostEntry("adding-hosts/replica/i-r2/", map[string]string{"node_id": "cln-r2", "instance_id": "i-r2", "role": "replica",
			"ip": "10.0.0.4", "sid": "3", "gid": "1", "gsid": "100000003", "cpu": "1", "memory": "1024", "token": "tok-2"}),
		map[string]string{
			"cluster/app_id":      "app-kv",
			"cluster/app_version": "appv-1",
			"cluster/cluster_id":  "cl-1",
			"cluster/user_id":     "usr-1",
			"cluster/global_uuid": "8d3c",
			"cluster/vxnet":       "vxnet-1",
			"cluster/zone":        "z1",

			"cluster/endpoints/client/port":            "6379",
			"cluster/endpoints/client/protocol":        "tcp",
			"cluster/endpoints/metrics/port":           "9121",
			"cluster/endpoints/metrics/protocol":       "http",
			"cluster/endpoints/reserved_ips/vip/value": "10.0.0.250",
			"env/port":                    "6379",
			"env/maxmemory":               "1gb",
			"env/4lw.commands.whitelist":  "srvr,ruok",
			"roles/replica/env/lag":       "10",
			"roles/replica/env/maxmemory": "512mb",
			"links/zk/cluster/cluster_id": "cl-zk",
			"links/zk/hosts/i-z1/ip":      "10.1.0.2",
		},
	)
	diff(t, got, want)
}

func TestBuildRoleless(t *testing.T) {
	spec := &apppkg.ClusterSpec{
		Env:   apppkg.Env{"tickTime": "2000", "zkVersion": "3.4.13"},
		Nodes: []apppkg.NodeSpec{{Count: 1, Env: apppkg.Env{"zkVersion": "3.6.3", "myid_base": "0"}}},
	}
	h := Host{NodeID: "cln-z1", InstanceID: "i-z1", IP: "10.0.0.9", SID: 1, GID: 1, GSID: "7"}
	c := Cluster{ClusterID: "cl-zk", AppID: "app-zk"}
	got := Build(c, spec, []Host{h}, Options{Deleting: []Host{h}, VerticalScalingRoles: []string{""},
		UpgradeAudit: &UpgradeAudit{FromAppVersion: "appv-old", ToAppVersion: "appv-new"}})
	hostFields := map[string]string{"node_id": "cln-z1", "instance_id": "i-z1", "ip": "10.0.0.9", "sid": "1", "gid": "1", "gsid": "7"}
	want := merge(
		hostEntry("hosts/i-z1/", hostFields),
		hostEntry("deleting-hosts/i-z1/", hostFields),
		map[string]string{
			"cluster/app_id": "app-zk", "cluster/app_version": "", "cluster/cluster_id": "cl-zk", "cluster/user_id": "",
			"cluster/global_uuid": "", "cluster/vxnet": "", "cluster/zone": "",
			// The node's env is merged into env/, the node winning.
			"env/tickTime": "2000", "env/zkVersion": "3.6.3", "env/myid_base": "0",
			"cluster/upgrade-audit/from_app_version": "appv-old", "cluster/upgrade-audit/to_app_version": "appv-new",
			"upgrade-audit/from_app_version": "appv-old", "upgrade-audit/to_app_version": "appv-new",
			"vertical-scaling-roles": "",
		},
	)
	diff(t, got, want)
}

func TestEnvLayout(t *testing.T) {
	spec := twoRoleSpec()
	got := Build(Cluster{ClusterID: "cl-1"}, spec, nil, Options{})
	env := map[string]string{}
	for k, v := range got {
		if strings.HasPrefix(k, "env/") || strings.HasPrefix(k, "roles/") {
			env[k] = v
		}
	}
	// The cluster env stays whole under env/ even where a role overrides a
	// key; the override lives only under the role.
	diff(t, env, map[string]string{
		"env/port": "6379", "env/maxmemory": "1gb", "env/4lw.commands.whitelist": "srvr,ruok",
		"roles/replica/env/lag": "10", "roles/replica/env/maxmemory": "512mb",
	})
	if p := RoleEnvPrefix("replica"); got[p+"lag"] != "10" {
		t.Fatalf("RoleEnvPrefix(replica) = %q does not lead to the role env", p)
	}
}

func TestBuildEndpointsOverrideAndEscaping(t *testing.T) {
	spec := twoRoleSpec()
	c := Cluster{ClusterID: "cl-1", Endpoints: map[string]apppkg.Endpoint{"admin": {Port: apppkg.Port{Number: 8080}}}}
	weird := Host{NodeID: "cln-w", InstanceID: "i/x", Role: "r/1"}
	got := Build(c, spec, []Host{weird}, Options{})
	if _, ok := got["cluster/endpoints/client/port"]; ok {
		t.Fatal("spec endpoints used although the cluster overrides them")
	}
	if got["cluster/endpoints/admin/port"] != "8080" {
		t.Fatalf("override endpoint missing: %v", got)
	}
	if got["hosts/r%2F1/i%2Fx/node_id"] != "cln-w" {
		t.Fatal("a '/' in a role or instance id must not split the path")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		c     Cluster
		hosts []Host
		opts  Options
		want  string
	}{
		{"ok", Cluster{ClusterID: "cl-1"}, []Host{master, replica1}, Options{Deleting: []Host{replica1}}, ""},
		{"no cluster id", Cluster{}, nil, Options{}, `cluster_id ""`},
		{"slash in instance id", Cluster{ClusterID: "c"}, []Host{{NodeID: "n", InstanceID: "i/1"}}, Options{}, `hosts[0].instance_id "i/1"`},
		{"slash in role", Cluster{ClusterID: "c"}, []Host{{NodeID: "n", InstanceID: "i", Role: "a/b"}}, Options{}, `hosts[0].role "a/b"`},
		{"no node id", Cluster{ClusterID: "c"}, []Host{{InstanceID: "i"}}, Options{}, `hosts[0].node_id ""`},
		{"duplicate instance", Cluster{ClusterID: "c"}, []Host{master, master}, Options{}, "appears twice"},
		{"adding host not in hosts", Cluster{ClusterID: "c"}, []Host{master}, Options{Adding: []Host{replica1}}, `adding[0].instance_id "i-r1": not among`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.c, tt.hosts, tt.opts)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// apppkg checks the keys templates read against its lists of what the tree
// holds; they must cover what Build writes.
func TestTreeMatchesAppPkgLists(t *testing.T) {
	spec := &apppkg.ClusterSpec{Env: apppkg.Env{"port": "1"}, Nodes: []apppkg.NodeSpec{{Role: "r"}},
		Endpoints: map[string]apppkg.Endpoint{"e": {Port: apppkg.Port{Number: 1}}}}
	h := Host{NodeID: "n", InstanceID: "i", Role: "r", PubKey: "k", Token: "t", ReservedIPs: map[string]string{"vip": "1.2.3.4"}}
	tree := Build(Cluster{ClusterID: "c"}, spec, []Host{h}, Options{Adding: []Host{h}, Deleting: []Host{h},
		VerticalScalingRoles: []string{"r"}, UpgradeAudit: &UpgradeAudit{FromAppVersion: "1", ToAppVersion: "2"}})
	for k := range tree {
		parts := strings.Split(k, "/")
		top := parts[0]
		if top == "roles" { // merged into env by the drone
			continue
		}
		if !slices.Contains(apppkg.MetadataTop, top) {
			t.Errorf("%s: top-level %q is not in apppkg.MetadataTop", k, top)
		}
		if top == "cluster" && !slices.Contains(apppkg.MetadataClusterFields, parts[1]) {
			t.Errorf("%s: %q is not in apppkg.MetadataClusterFields", k, parts[1])
		}
	}
	for f := range HostFields(h) {
		if !slices.Contains(apppkg.MetadataHostFields, strings.Split(f, "/")[0]) {
			t.Errorf("host field %q is not in apppkg.MetadataHostFields", f)
		}
	}
}
