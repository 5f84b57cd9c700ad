package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
	"github.com/hangarhq/hangar/internal/userdata"
)

func createLocalRuntime(t testing.TB, p *pilot) {
	t.Helper()
	_, err := p.runtimes.CreateRuntime(context.Background(), &pilotv1.CreateRuntimeRequest{Id: "local", Provider: "local", Zone: "local"})
	if err != nil {
		t.Fatalf("create local runtime: %v", err)
	}
}

// createCluster creates a cluster of app ("name", or "name@version" for
// another version than the newest) and waits for its job.
func createCluster(t testing.TB, p *pilot, app string, params map[string]string) (*pilotv1.Cluster, *pilotv1.Job) {
	t.Helper()
	return createClusterOn(t, p, "local", app, params)
}

// createClusterOn creates a cluster of app (name or name@version) on a
// runtime and waits for its create job.
func createClusterOn(t testing.TB, p *pilot, runtime, app string, params map[string]string) (*pilotv1.Cluster, *pilotv1.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	name, version, _ := strings.Cut(app, "@")
	r, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: name, AppVersion: version, Runtime: runtime, Params: params})
	if err != nil {
		t.Fatalf("create cluster of %s on %s: %v", app, runtime, err)
	}
	job := p.waitJob(ctx, r.Job.Id)
	return p.cluster(r.Cluster.Id), job
}

func mustSucceed(t testing.TB, j *pilotv1.Job) {
	t.Helper()
	if j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s (%s) ended %v: %s", j.Id, j.Kind, j.State, j.Error)
	}
}

func kvConf(t *testing.T, p *pilot, n *pilotv1.Node) string {
	b, err := os.ReadFile(filepath.Join(p.instanceRoot(n.InstanceId), "opt", "kv", "kv.conf"))
	if err != nil {
		return ""
	}
	return string(b)
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

func byRole(c *pilotv1.Cluster, role string) []*pilotv1.Node {
	var out []*pilotv1.Node
	for _, n := range c.Nodes {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

// frontgateOf reads the frontgate address from a node's user data.
func frontgateOf(t *testing.T, p *pilot, n *pilotv1.Node) userdata.Drone {
	t.Helper()
	ud, err := userdata.ReadDrone(filepath.Join(p.runtimeRoot(), "instances", n.InstanceId, "userdata.json"))
	if err != nil {
		t.Fatal(err)
	}
	return ud
}

// etcdClient connects to a frontgate's etcd as id, with a certificate made
// from pilot's CA.
func etcdClient(t *testing.T, p *pilot, endpoint string, id pki.Identity) *clientv3.Client {
	t.Helper()
	key, _ := pki.NewKey()
	certPEM, _, err := p.ca().Issue(key.Public(), id, nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	creds, err := tlsutil.Save(t.TempDir(), keyPEM, certPEM, p.caPEM())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(endpoint)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: creds.ClientConfig(u.Hostname(), pki.Identity{})})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// frontgateID finds the frontgate's id in its instance's user data.
func frontgateID(t *testing.T, p *pilot) string {
	t.Helper()
	for _, dir := range instanceDirs(t, p) {
		fg, err := userdata.ReadFrontgate(filepath.Join(p.runtimeRoot(), "instances", dir, "userdata.json"))
		if err == nil {
			return fg.FrontgateID
		}
	}
	t.Fatal("no frontgate instance")
	return ""
}

func etcdKeys(t *testing.T, p *pilot, endpoint, prefix string) int {
	t.Helper()
	c := etcdClient(t, p, endpoint, pki.Identity{Kind: pki.KindFrontgate, ID: frontgateID(t, p)})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("read frontgate etcd %s: %v", endpoint, err)
	}
	return int(resp.Count)
}

func TestKVClusterLifecycle(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	out := p.mustHangar("app", "push", "examples/kv")
	if !strings.Contains(out, "kv") {
		t.Fatalf("app push output does not name the app:\n%s", out)
	}

	// Bad input is refused by name and creates nothing.
	for _, tc := range []struct{ param, want string }{
		{"env.no_such_key=1", "env.no_such_key"},
		{"env.port=80", "env.port"},
		{"cluster.replica.count=many", "cluster.replica.count"},
	} {
		out, err := p.hangar("cluster", "create", "kv", "--param", tc.param)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("create with %s: err=%v, output does not name %s:\n%s", tc.param, err, tc.want, out)
		}
	}
	if list, err := p.clusters.ListClusters(context.Background(), &pilotv1.ListClustersRequest{}); err != nil || len(list.Clusters) != 0 {
		t.Fatalf("rejected creates left clusters behind: %v %v", list, err)
	}

	c, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "2"})
	mustSucceed(t, job)
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("cluster status %v, want ACTIVE", c.Status)
	}
	for _, n := range c.Nodes {
		if n.Status != pilotv1.NodeStatus_NODE_STATUS_ACTIVE {
			t.Errorf("node %s (%s) is %v, want ACTIVE", n.Id, n.Role, n.Status)
		}
	}
	primaries, replicas := byRole(c, "primary"), byRole(c, "replica")
	if len(primaries) != 1 || len(replicas) != 2 {
		t.Fatalf("got %d primaries and %d replicas, want 1 and 2", len(primaries), len(replicas))
	}
	primary := primaries[0]
	primaryAddr := primary.Address + ":6380"

	t.Run("the REST gateway serves the same cluster", func(t *testing.T) {
		body, err := p.restGet("/v1/clusters/" + c.Id)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Nodes  []struct {
				Address string `json:"address"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		if got.ID != c.Id || got.Status != "CLUSTER_STATUS_ACTIVE" || len(got.Nodes) != 3 {
			t.Fatalf("REST cluster: %+v", got)
		}
	})

	t.Run("every node's config names the primary", func(t *testing.T) {
		for _, n := range c.Nodes {
			conf := kvConf(t, p, n)
			if !strings.Contains(conf, "primary = "+primaryAddr) {
				t.Errorf("node %s (%s) config does not name the primary %s:\n%s", n.Id, n.Role, primaryAddr, conf)
			}
		}
	})

	t.Run("primary started before any replica", func(t *testing.T) {
		var primaryDone, firstReplica time.Time
		seen := 0
		for _, task := range job.Tasks {
			if task.Kind != "run_service" || !strings.HasPrefix(task.Title, "start ") {
				continue
			}
			for _, r := range task.NodeResults {
				seen++
				switch r.Role {
				case "primary":
					primaryDone = r.FinishedAt.AsTime()
				case "replica":
					if s := r.StartedAt.AsTime(); firstReplica.IsZero() || s.Before(firstReplica) {
						firstReplica = s
					}
				}
			}
		}
		if seen != 3 || primaryDone.IsZero() || firstReplica.IsZero() {
			t.Fatalf("start results: %d recorded, primary finished %v, first replica started %v", seen, primaryDone, firstReplica)
		}
		if !primaryDone.Before(firstReplica) {
			t.Fatalf("primary start finished at %v, after a replica's start began at %v", primaryDone, firstReplica)
		}
	})

	t.Run("the service replicates", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, "http://"+primaryAddr+"/kv/greeting", strings.NewReader("hello"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("PUT on primary: %s", resp.Status)
		}
		for _, r := range replicas {
			waitFor(t, 20*time.Second, "replica "+r.Address+" to serve the key", func() (bool, string) {
				body, err := httpGet("http://" + r.Address + ":6380/kv/greeting")
				return err == nil && strings.Contains(body, "hello"), fmt.Sprint(body, err)
			})
		}
	})

	t.Run("env change re-renders and reloads every node", func(t *testing.T) {
		out := p.mustHangar("cluster", "update-env", c.Id, "motd=changed by e2e", "--wait")
		_ = out
		for _, n := range c.Nodes {
			waitFor(t, 30*time.Second, "node "+n.Id+" to re-render and reload", func() (bool, string) {
				conf := kvConf(t, p, n)
				if !strings.Contains(conf, "motd = changed by e2e") {
					return false, "config: " + conf
				}
				body, err := httpGet("http://" + n.Address + ":6380/status")
				if err != nil {
					return false, err.Error()
				}
				var st struct{ Motd string }
				_ = json.Unmarshal([]byte(body), &st)
				return st.Motd == "changed by e2e", "status: " + body
			})
			reloads, err := os.ReadFile(filepath.Join(p.instanceRoot(n.InstanceId), "var", "run", "reload.log"))
			if err != nil || !strings.Contains(string(reloads), "reloaded") {
				t.Errorf("node %s: reload command left no trace: %v %q", n.Id, err, reloads)
			}
		}
		// A fixed (changeable=false) key is refused.
		if out, err := p.hangar("cluster", "update-env", c.Id, "port=7000"); err == nil || !strings.Contains(out, "port") {
			t.Errorf("changing a fixed key: err=%v output=%s", err, out)
		}
	})

	t.Run("update-env --wait returns once every drone rendered", func(t *testing.T) {
		p.mustHangar("cluster", "update-env", c.Id, "motd=rendered before the return", "--wait")
		// No waiting here: the job ended only when every drone reported
		// the new revision rendered and its reload run.
		after := p.cluster(c.Id)
		for _, n := range after.Nodes {
			if conf := kvConf(t, p, n); !strings.Contains(conf, "motd = rendered before the return") {
				t.Errorf("node %s: config not yet rendered when --wait returned:\n%s", n.Id, conf)
			}
			if n.RenderedRevision < after.MetadataRevision || after.MetadataRevision == 0 {
				t.Errorf("node %s shows rendered revision %d, cluster metadata revision %d", n.Id, n.RenderedRevision, after.MetadataRevision)
			}
		}
		show := p.mustHangar("cluster", "show", c.Id)
		if !strings.Contains(show, "RENDERED") || !strings.Contains(show, fmt.Sprintf("revision %d", after.MetadataRevision)) {
			t.Errorf("cluster show lacks the rendered revisions:\n%s", show)
		}
	})

	// A second cluster keeps the network's frontgate alive, so we can see
	// the first cluster's metadata go while the frontgate stays.
	c2, job2 := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job2)
	fg := frontgateOf(t, p, primary)
	if n := etcdKeys(t, p, fg.EtcdEndpoints[0], "/clusters/"+c.Id+"/"); n == 0 {
		t.Fatalf("frontgate etcd holds no metadata for %s before delete", c.Id)
	}

	t.Run("delete leaves nothing behind", func(t *testing.T) {
		ids := []string{}
		for _, n := range c.Nodes {
			ids = append(ids, n.InstanceId)
		}
		out := p.mustHangar("cluster", "delete", c.Id, "--wait")
		_ = out
		if _, err := p.clusters.GetCluster(context.Background(), &pilotv1.GetClusterRequest{Id: c.Id}); status.Code(err) != codes.NotFound {
			t.Errorf("cluster record after delete: %v, want NotFound", err)
		}
		if pids := processesOf(ids...); len(pids) > 0 {
			t.Errorf("processes of deleted instances still run: %v", pids)
		}
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(p.runtimeRoot(), "instances", id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("instance dir %s still exists (%v)", id, err)
			}
		}
		if n := etcdKeys(t, p, fg.EtcdEndpoints[0], "/clusters/"+c.Id+"/"); n != 0 {
			t.Errorf("frontgate etcd still holds %d metadata keys of deleted cluster %s", n, c.Id)
		}
		if n := etcdKeys(t, p, fg.EtcdEndpoints[0], "/clusters/"+c2.Id+"/"); n == 0 {
			t.Errorf("deleting %s removed the metadata of %s", c.Id, c2.Id)
		}
	})

	t.Run("last cluster takes the frontgate with it", func(t *testing.T) {
		before := instanceDirs(t, p)
		if len(before) != 2 {
			t.Fatalf("before the last delete: instances %v, want the frontgate and one node", before)
		}
		p.mustHangar("cluster", "delete", c2.Id, "--wait")
		if left := instanceDirs(t, p); len(left) > 0 {
			t.Errorf("instance dirs left after the last cluster went: %v", left)
		}
		if pids := processesOf(before...); len(pids) > 0 {
			t.Errorf("processes of the frontgate or the last node still run: %v", pids)
		}
	})
}

func instanceDirs(t *testing.T, p *pilot) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(p.runtimeRoot(), "instances"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// restGet calls pilot's REST gateway over TLS with the admin token.
func (p *pilot) restGet(path string) (string, error) {
	code, body, err := p.rest(http.MethodGet, path, p.token, nil)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET %s: %d %s", path, code, http.StatusText(code))
	}
	return body, err
}

// rest calls pilot's REST gateway over TLS with token ("" for none) and
// body (nil for none), and returns the status and the answer.
func (p *pilot) rest(method, path, token string, body io.Reader) (int, string, error) {
	cfg, err := tlsutil.AnonymousClientConfig(p.caPEM(), "127.0.0.1", pki.Identity{})
	if err != nil {
		return 0, "", err
	}
	c := http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, "https://"+p.httpAddr+path, body)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
