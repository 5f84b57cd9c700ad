package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// updateGolden rewrites testdata/expected from what the nodes rendered
// (placeholders put back in): go test ./tests/e2e -run TestPackagesAsTheyExist -update.
var updateGolden = flag.Bool("update", false, "rewrite tests/e2e/testdata/expected from the rendered files")

// Packages written in the style of real AppCenter and OpenPitrix ones run
// unchanged: each passes lint, is pushed as it is, creates a cluster on the
// local runtime, and every node renders its files as testdata/expected
// says, placeholders filled in for what differs between runs.
func TestPackagesAsTheyExist(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	td := filepath.Join(repoRoot(t), "tests", "e2e", "testdata")

	// A role-less ensemble without package.json: name and version come
	// from the folder's name.
	zkDir := filepath.Join(td, "zkens-3.4.13")
	lint := p.mustHangar("app", "lint", zkDir)
	if !strings.Contains(lint, "zkens 3.4.13 is a valid package") {
		t.Fatalf("lint zkens:\n%s", lint)
	}
	mustNotWarn(t, lint, "zkens", "multi_zone_policy", "taken from the folder's name")
	p.mustHangar("app", "push", zkDir)
	zk, job := createCluster(t, p, "zkens", map[string]string{"cluster.name": "zk"})
	mustSucceed(t, job)
	checkRendered(t, p, "zkens", zk, nil, map[string]string{
		"zoo.cfg": "opt/zookeeper/conf/zoo.cfg", "myid": "data/zookeeper/myid", "events.log": "data/zookeeper/events.log",
	})

	// A reload_cmd that fails fails the create, and the job says why: the
	// command's exit status and output.
	ctl, err := os.ReadFile(filepath.Join(zkDir, "confd", "templates", "ctl.sh.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	badCtl := strings.Replace(string(ctl), `  reload) `, `  reload) echo "zoo.cfg rejected: no quorum" >&2; exit 4 ;; reload-old) `, 1)
	if badCtl == string(ctl) {
		t.Fatal("ctl.sh.tmpl has no reload branch to break")
	}
	bad := copyPackage(t, "tests/e2e/testdata/zkens-3.4.13", map[string]string{"confd/templates/ctl.sh.tmpl": badCtl})
	p.mustHangar("app", "push", bad, "--name", "zkbad", "--version", "1")
	_, job = createCluster(t, p, "zkbad", nil)
	if job.State != pilotv1.JobState_JOB_STATE_FAILED || !strings.Contains(job.Error, "exit status 4") || !strings.Contains(job.Error, "zoo.cfg rejected: no quorum") {
		t.Fatalf("create with a failing reload_cmd ended %v: %s", job.State, job.Error)
	}

	// An OpenPitrix package: cluster.json.tmpl, a capitalised name, subnet.
	stDir := filepath.Join(td, "standalone")
	p.mustHangar("app", "lint", stDir)
	out := p.mustHangar("app", "push", stDir)
	if !strings.Contains(out, "Pushed standalone 1.0.0") {
		t.Fatalf("push standalone:\n%s", out)
	}
	st, job := createCluster(t, p, "standalone", map[string]string{"env.hash-max-ziplist-entries": "256"})
	mustSucceed(t, job)
	checkRendered(t, p, "standalone", st, nil, map[string]string{
		"server.conf": "opt/app/conf/server.conf", "status.json": "opt/app/conf/status.json", "server.log": "data/server.log",
	})

	// Three roles linked to the ensemble, with endpoints.
	mqDir := filepath.Join(td, "mq")
	p.mustHangar("app", "lint", mqDir)
	p.mustHangar("app", "push", mqDir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before, err := p.clusters.ListClusters(ctx, &pilotv1.ListClustersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "mq", Runtime: "local",
		Params: map[string]string{"cluster.zk_service": "cl-nosuchcluster"}}); err == nil || !strings.Contains(err.Error(), "links.zk") || !strings.Contains(err.Error(), "cl-nosuchcluster") {
		t.Fatalf("a link to a cluster that does not exist: %v", err)
	}
	if after, err := p.clusters.ListClusters(ctx, &pilotv1.ListClustersRequest{}); err != nil || len(after.Clusters) != len(before.Clusters) {
		t.Fatalf("a refused link left %d clusters (%v), %d before", len(after.GetClusters()), err, len(before.Clusters))
	}
	mq, job := createCluster(t, p, "mq", map[string]string{"cluster.zk_service": zk.Id})
	mustSucceed(t, job)
	checkRendered(t, p, "mq", mq, zk, map[string]string{"mq.conf": "opt/app/conf/mq.conf", "node.log": "data/node.log"})
	// The disc nodes (passphraseless) share a key pair, written to
	// /root/.ssh; the others have none.
	var discKey string
	for _, n := range mq.Nodes {
		ssh := filepath.Join(p.instanceRoot(n.InstanceId), "root", ".ssh")
		priv, err := os.Stat(filepath.Join(ssh, "id_rsa"))
		if n.Role != "disc" {
			if err == nil {
				t.Errorf("%s node %d has an ssh key", n.Role, n.Sid)
			}
			continue
		}
		if err != nil || priv.Mode().Perm() != 0o600 {
			t.Fatalf("disc node %d: id_rsa %v, %v", n.Sid, priv, err)
		}
		auth, err := os.ReadFile(filepath.Join(ssh, "authorized_keys"))
		if err != nil || !strings.HasPrefix(string(auth), "ssh-rsa ") || (discKey != "" && string(auth) != discKey) {
			t.Fatalf("disc node %d: authorized_keys %q, %v (another's %q)", n.Sid, auth, err, discKey)
		}
		discKey = string(auth)
	}

	// Reserved addresses: the cluster's (endpoints.reserved_ips) and the
	// proxy's (reserved_ips), none an instance's, rendered on the nodes.
	used := map[string]bool{}
	for _, n := range mq.Nodes {
		used[n.Address] = true
	}
	write := mq.ReservedIps["write"]
	if write == "" || used[write] {
		t.Fatalf("cluster's reserved address %q (instances: %v)", write, used)
	}
	for _, n := range mq.Nodes {
		want := "cluster " + write + "\n"
		if n.Role == "proxy" {
			vip := n.ReservedIps["vip"]
			if vip == "" || used[vip] || vip == write {
				t.Fatalf("proxy's reserved address %q", vip)
			}
			want += "node " + vip + "\n"
		}
		path := filepath.Join(p.instanceRoot(n.InstanceId), "opt", "app", "conf", "vip.conf")
		waitFor(t, 30*time.Second, fmt.Sprintf("%s node %d's vip.conf", n.Role, n.Sid), func() (bool, string) {
			b, _ := os.ReadFile(path)
			return string(b) == want, fmt.Sprintf("got %q, want %q", b, want)
		})
	}

	// A display tab runs on the first node of each of its roles.
	tab := p.mustHangar("cluster", "tab", mq.Id, "instances")
	for _, n := range mq.Nodes {
		first := (n.Role == "disc" && n.Sid == 1) || (n.Role == "ram" && n.Sid == 3)
		if strings.Contains(tab, n.InstanceId) != first {
			t.Errorf("tab output for %s node %d (%s):\n%s", n.Role, n.Sid, n.InstanceId, tab)
		}
	}

	// The linked cluster grows: the linking cluster's nodes follow.
	sr, err := p.clusters.ScaleCluster(ctx, &pilotv1.ScaleClusterRequest{Id: zk.Id, Role: "", Count: 5})
	if err != nil {
		t.Fatalf("scale zk: %v", err)
	}
	mustSucceed(t, p.waitJob(ctx, sr.Job.Id))
	zk = p.cluster(zk.Id)
	var fifth string
	for _, n := range zk.Nodes {
		if n.Sid == 5 {
			fifth = n.Address
		}
	}
	for _, n := range mq.Nodes {
		path := filepath.Join(p.instanceRoot(n.InstanceId), "opt", "app", "conf", "mq.conf")
		waitFor(t, 30*time.Second, fmt.Sprintf("mq node %d to list the linked cluster's fifth server", n.Sid), func() (bool, string) {
			b, _ := os.ReadFile(path)
			return strings.Contains(string(b), "zk.server.5 = "+fifth+":2181"), string(b)
		})
	}

	show := p.mustHangar("cluster", "show", mq.Id)
	for _, want := range []string{"amqp", "(cluster)", "balanced"} {
		if !strings.Contains(show, want) {
			t.Errorf("cluster show lacks %q:\n%s", want, show)
		}
	}

	// The linked cluster is deleted: the linking cluster's copy of its tree
	// is emptied, its nodes render without it, and it keeps running.
	dr, err := p.clusters.DeleteCluster(ctx, &pilotv1.DeleteClusterRequest{Id: zk.Id})
	if err != nil {
		t.Fatalf("delete zk: %v", err)
	}
	mustSucceed(t, p.waitJob(ctx, dr.Job.Id))
	for _, n := range mq.Nodes {
		path := filepath.Join(p.instanceRoot(n.InstanceId), "opt", "app", "conf", "mq.conf")
		waitFor(t, 30*time.Second, fmt.Sprintf("mq node %d to render without the deleted linked cluster", n.Sid), func() (bool, string) {
			b, _ := os.ReadFile(path)
			return strings.Contains(string(b), "zk.cluster = none") && !strings.Contains(string(b), "zk.server."), string(b)
		})
	}
	if got := p.cluster(mq.Id); got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("mq is %v after its linked cluster was deleted, want active", got.Status)
	}
}

func mustNotWarn(t *testing.T, lint, pkg string, allowed ...string) {
	t.Helper()
	for _, line := range strings.Split(lint, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "- ") {
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || strings.Contains(line, a)
		}
		if !ok {
			t.Errorf("%s: unexpected lint warning %s", pkg, line)
		}
	}
}

// checkRendered compares each node's files (name → path under the
// instance root) with testdata/expected/<pkg>/<role>-<sid>/<name>. In the
// expected files @ip:N@ is the address of the node with sid N, @zkip:N@ the
// same in the linked cluster, @cluster@ the cluster's id.
func checkRendered(t *testing.T, p *pilot, pkg string, c, linked *pilotv1.Cluster, files map[string]string) {
	t.Helper()
	var pairs []string
	addr := func(prefix string, c *pilotv1.Cluster) {
		for _, n := range c.Nodes {
			pairs = append(pairs, fmt.Sprintf("@%s:%d@", prefix, n.Sid), n.Address)
		}
	}
	addr("ip", c)
	if linked != nil {
		addr("zkip", linked)
	}
	pairs = append(pairs, "@cluster@", c.Id)
	fill := strings.NewReplacer(pairs...)
	// Unfilling puts placeholders back, longest values first so that
	// 127.0.0.10 is not read as 127.0.0.1 followed by 0.
	var back []string
	for i := 0; i < len(pairs); i += 2 {
		back = append(back, pairs[i+1], pairs[i])
	}
	sortPairsByLength(back)
	unfill := strings.NewReplacer(back...)

	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range c.Nodes {
		dir := filepath.Join(repoRoot(t), "tests", "e2e", "testdata", "expected", pkg, fmt.Sprintf("%s-%d", roleDir(n.Role), n.Sid))
		for _, name := range names {
			path := filepath.Join(p.instanceRoot(n.InstanceId), filepath.FromSlash(files[name]))
			expectedPath := filepath.Join(dir, name)
			if *updateGolden {
				got, err := os.ReadFile(path)
				if err != nil {
					continue // a role without the file
				}
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(expectedPath, []byte(unfill.Replace(stripTimes(string(got)))), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(expectedPath)
			if os.IsNotExist(err) {
				if _, err := os.Stat(path); err == nil {
					t.Errorf("%s node %d: %s was rendered, and %s does not expect it", n.Role, n.Sid, files[name], expectedPath)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			wantText := fill.Replace(string(want))
			waitFor(t, 30*time.Second, fmt.Sprintf("%s node %d (%s) to hold %s as expected", n.Role, n.Sid, n.Id, files[name]), func() (bool, string) {
				got, err := os.ReadFile(path)
				if err != nil {
					return false, err.Error()
				}
				return stripTimes(string(got)) == wantText, "got:\n" + string(got) + "\nwant:\n" + wantText
			})
		}
	}
}

func roleDir(role string) string {
	if role == "" {
		return "node"
	}
	return role
}

// stripTimes drops the leading Unix time of each line of an events log.
func stripTimes(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if f, rest, ok := strings.Cut(l, " "); ok && len(f) >= 10 && strings.Trim(f, "0123456789") == "" {
			lines[i] = rest
		}
	}
	return strings.Join(lines, "\n")
}

func sortPairsByLength(pairs []string) {
	type kv struct{ k, v string }
	list := make([]kv, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		list = append(list, kv{pairs[i], pairs[i+1]})
	}
	sort.SliceStable(list, func(i, j int) bool { return len(list[i].k) > len(list[j].k) })
	for i, e := range list {
		pairs[2*i], pairs[2*i+1] = e.k, e.v
	}
}
