package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/dockertest"
)

// The docker runtime, end to end: pilot, the docker provider plugin, a
// frontgate container and drone containers built by scripts/images.sh.
// Pilot listens on the uplink network's gateway (the default bridge), the
// only address the frontgate can dial; the instances' internal network has
// no route to it.

// dockerPilot starts pilot on the default bridge's gateway, with a docker
// runtime of a name of its own (what it creates is told apart by label
// from what tests running beside it create), and builds the images names.
func dockerPilot(t testing.TB, images ...string) (*pilot, *client.Client, string) {
	t.Helper()
	return dockerPilotWith(t, images, nil)
}

// dockerPilotWith is dockerPilot with pilot's extra args.
func dockerPilotWith(t testing.TB, images, args []string) (*pilot, *client.Client, string) {
	t.Helper()
	dc := dockertest.Require(t)
	dockertest.Images(t, append([]string{"drone-base", "frontgate"}, images...)...)
	ctx := context.Background()
	br, err := dc.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil || len(br.Network.IPAM.Config) == 0 {
		t.Fatalf("inspect Docker's bridge network: %v", err)
	}
	// The default bridge's IPAM often names no gateway: it is then the
	// subnet's first address, docker0's.
	gwAddr := br.Network.IPAM.Config[0].Gateway
	if !gwAddr.IsValid() {
		gwAddr = br.Network.IPAM.Config[0].Subnet.Masked().Addr().Next()
	}
	rt := fmt.Sprintf("docker-%d", time.Now().UnixNano()%1e9)
	// Registered first, so it runs last: after the harness has deleted
	// the clusters and stopped pilot, nothing of the runtime may be left.
	t.Cleanup(func() {
		if !t.Failed() {
			assertNoneLabelled(t, dc, "hangar.docker/runtime="+rt)
		}
	})
	_, port, _ := net.SplitHostPort(freePort(t))
	p := startPilotAt(t, net.JoinHostPort(gwAddr.String(), port), args...)
	if _, err := p.runtimes.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: rt, Provider: "docker", Zone: "docker"}); err != nil {
		t.Fatalf("create the docker runtime: %v", err)
	}
	return p, dc, rt
}

// labelled lists what carries every label (key=value): containers,
// networks, volumes, by name.
func labelled(t testing.TB, dc *client.Client, labels ...string) (containers, networks, volumes []string) {
	t.Helper()
	ctx := context.Background()
	f := make(client.Filters).Add("label", labels...)
	cs, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.Items {
		containers = append(containers, strings.TrimPrefix(c.Names[0], "/"))
	}
	ns, err := dc.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns.Items {
		networks = append(networks, n.Name)
	}
	vs, err := dc.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Items {
		volumes = append(volumes, v.Name)
	}
	return
}

func assertNoneLabelled(t testing.TB, dc *client.Client, label string) {
	t.Helper()
	c, n, v := labelled(t, dc, label)
	if len(c)+len(n)+len(v) > 0 {
		t.Errorf("left with label %s: containers %v, networks %v, volumes %v", label, c, n, v)
	}
}

// dockerExec runs a command in a container.
func dockerExec(container string, args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"exec", container}, args...)...).CombinedOutput()
	return string(out), err
}

// canConnect says whether a TCP connection from inside container to
// host:port is established, with busybox's nc: it complains ("nc: can't
// connect…", "nc: timed out") when it is not, and holds a connection it
// made, silently, until timeout ends it.
func canConnect(container, host, port string) (bool, string) {
	out, _ := dockerExec(container, "timeout", "5", "nc", "-w", "3", host, port)
	return !strings.Contains(out, "nc: "), out
}

// kvPut and waitKV talk to a kv node from inside a container of the
// network (busybox wget): the host has no address on it.
func kvPut(t *testing.T, from, addr, key, value string) {
	t.Helper()
	// busybox wget cannot PUT; hangar-kv takes a POST as a PUT.
	if out, err := dockerExec(from, "wget", "-q", "-O", "-", "--post-data", value, "http://"+addr+"/kv/"+key); err != nil {
		t.Fatalf("PUT %s on %s from %s: %v %s", key, addr, from, err, out)
	}
}

func waitKV(t *testing.T, from, addr, key, want string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%s to serve %s=%s", addr, key, want), func() (bool, string) {
		out, err := dockerExec(from, "wget", "-q", "-O", "-", "http://"+addr+"/kv/"+key)
		return err == nil && strings.TrimSpace(out) == want, fmt.Sprint(out, err)
	})
}

// TestDockerNetworkBoundary deploys the kv example on the docker runtime
// and checks where traffic can go: from inside an instance, pilot's
// address does not answer (the network is internal), yet the cluster
// deployed and replicates, so everything went through the frontgate's
// outbound stream; the frontgate is the one container on both networks.
func TestDockerNetworkBoundary(t *testing.T) {
	p, dc, rt := dockerPilot(t, "kv")
	p.mustHangar("app", "push", "examples/kv")
	c, job := createClusterOn(t, p, rt, "kv", map[string]string{"cluster.replica.count": "1"})
	mustSucceed(t, job)
	primary, replica := byRole(c, "primary")[0], byRole(c, "replica")[0]

	kvPut(t, primary.InstanceId, primary.Address+":6380", "greeting", "hello")
	waitKV(t, replica.InstanceId, replica.Address+":6380", "greeting", "hello")

	// The probe works: a peer in the network answers it.
	if ok, out := canConnect(replica.InstanceId, primary.Address, "6380"); !ok {
		t.Fatalf("from the replica's container, the primary's %s:6380 does not answer: %s", primary.Address, out)
	}
	host, port, _ := net.SplitHostPort(p.addr)
	for _, n := range c.Nodes {
		if ok, out := canConnect(n.InstanceId, host, port); ok {
			t.Errorf("node %s reached pilot at %s from inside its container: %s", n.Id, p.addr, out)
		}
		ins, err := dc.ContainerInspect(context.Background(), n.InstanceId, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if nets := ins.Container.NetworkSettings.Networks; len(nets) != 1 {
			t.Errorf("node %s's container is on %d networks (%v), want only its VPC", n.Id, len(nets), keys(nets))
		}
		if ins.Container.Config.Labels["hangar/cluster"] != c.Id || ins.Container.Config.Labels["hangar/node"] != n.Id {
			t.Errorf("node %s's container labels %v do not name its cluster and node", n.Id, ins.Container.Config.Labels)
		}
	}
	fg, _, _ := labelled(t, dc, "hangar/role=frontgate", "hangar.docker/runtime="+rt)
	if len(fg) != 1 {
		t.Fatalf("frontgate containers: %v, want one", fg)
	}
	ins, err := dc.ContainerInspect(context.Background(), fg[0], client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ins.Container.NetworkSettings.Networks["bridge"]; !ok || len(ins.Container.NetworkSettings.Networks) != 2 {
		t.Errorf("the frontgate's networks are %v, want its VPC and the uplink (bridge)", keys(ins.Container.NetworkSettings.Networks))
	}

	// Deleting the cluster removes every container and volume of it, and
	// (the last cluster of the network) the network and its frontgate.
	p.mustHangar("cluster", "delete", c.Id, "--wait")
	assertNoneLabelled(t, dc, "hangar/cluster="+c.Id)
	assertNoneLabelled(t, dc, "hangar.docker/runtime="+rt)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// replicated is an app whose data checks run on the docker runtime: write
// on the primary, read on a node, from inside the node's container (the
// clients are in the app's image).
type replicated struct {
	app, image string
	params     map[string]string
	write      func(primary *pilotv1.Node, value string) (string, error)
	read       func(n *pilotv1.Node) (string, error)
}

// TestDockerReplicatedApps deploys the Redis and MariaDB examples on the
// docker runtime, from the images make images builds, and runs the
// lifecycle issue's data checks there: what the primary is written is read
// on every replica, a replica added by scale-out catches up, a scale-in
// removes the containers and volumes of the replicas that leave and the
// one that stays still replicates, and deleting the cluster leaves nothing
// with its label.
func TestDockerReplicatedApps(t *testing.T) {
	const redisPort, mariaPort = "6379", "3306"
	redis := func(n *pilotv1.Node, args ...string) (string, error) {
		out, err := dockerExec(n.InstanceId, append([]string{"redis-cli", "-h", n.Address, "-p", redisPort}, args...)...)
		return strings.TrimSpace(out), err
	}
	maria := func(n *pilotv1.Node, stmts string) (string, error) {
		out, err := exec.Command("docker", "exec", "-e", "MYSQL_PWD="+mariaAdminPassword, n.InstanceId,
			"mariadb", "--no-defaults", "-h", n.Address, "-P", mariaPort, "-uadmin", "--connect-timeout=5",
			"--batch", "--skip-column-names", "-e", stmts).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, app := range []replicated{
		{
			app: "redis", image: "redis",
			params: map[string]string{"env.port": redisPort},
			write:  func(p *pilotv1.Node, v string) (string, error) { return redis(p, "set", "k", v) },
			read:   func(n *pilotv1.Node) (string, error) { return redis(n, "get", "k") },
		},
		{
			app: "mariadb", image: "mariadb",
			params: map[string]string{"env.port": mariaPort, "env.admin_password": mariaAdminPassword, "env.replication_password": mariaReplPassword},
			write: func(p *pilotv1.Node, v string) (string, error) {
				return maria(p, "CREATE DATABASE IF NOT EXISTS hangar_test; CREATE TABLE IF NOT EXISTS hangar_test.t (id INT PRIMARY KEY, v VARCHAR(64)); REPLACE INTO hangar_test.t VALUES (1, '"+v+"')")
			},
			read: func(n *pilotv1.Node) (string, error) { return maria(n, "SELECT v FROM hangar_test.t WHERE id = 1") },
		},
	} {
		t.Run(app.app, func(t *testing.T) {
			p, dc, rt := dockerPilot(t, app.image)
			p.mustHangar("app", "push", "examples/"+app.app)
			params := map[string]string{"cluster.replica.count": "2"}
			maps.Copy(params, app.params)
			c, job := createClusterOn(t, p, rt, app.app, params)
			mustSucceed(t, job)
			primary := byRole(c, "primary")[0]
			waitRead := func(n *pilotv1.Node, want string) {
				t.Helper()
				waitFor(t, 60*time.Second, fmt.Sprintf("node %s (%s) to read %q", n.Id, n.Address, want), func() (bool, string) {
					got, err := app.read(n)
					return err == nil && got == want, fmt.Sprint(got, err)
				})
			}
			if out, err := app.write(primary, "before the scale-out"); err != nil {
				t.Fatalf("write on the primary: %v %s", err, out)
			}
			for _, n := range byRole(c, "replica") {
				waitRead(n, "before the scale-out")
			}

			p.mustHangar("cluster", "scale", c.Id, "--role", "replica", "--count", "3", "--wait")
			grown := p.cluster(c.Id)
			if got := len(byRole(grown, "replica")); got != 3 {
				t.Fatalf("after the scale-out: %d replicas, want 3", got)
			}
			for _, n := range byRole(grown, "replica") {
				waitRead(n, "before the scale-out")
			}

			p.mustHangar("cluster", "scale", c.Id, "--role", "replica", "--count", "1", "--wait")
			final := p.cluster(c.Id)
			staying := byRole(final, "replica")
			if len(staying) != 1 {
				t.Fatalf("after the scale-in: replicas %v, want 1", staying)
			}
			for _, n := range byRole(grown, "replica") {
				if n.Id == staying[0].Id {
					continue
				}
				assertNoneLabelled(t, dc, "hangar/node="+n.Id)
				if _, err := dc.VolumeInspect(context.Background(), n.VolumeId, client.VolumeInspectOptions{}); err == nil {
					t.Errorf("removed replica %s's volume %s is left", n.Id, n.VolumeId)
				}
			}
			if out, err := app.write(primary, "after the scale-in"); err != nil {
				t.Fatalf("write on the primary: %v %s", err, out)
			}
			waitRead(staying[0], "after the scale-in")

			p.mustHangar("cluster", "delete", c.Id, "--wait")
			assertNoneLabelled(t, dc, "hangar/cluster="+c.Id)
		})
	}
}

// waitNodeStatus waits until the node's status is one of want.
func waitNodeStatus(t *testing.T, p *pilot, clusterID, nodeID string, timeout time.Duration, want ...pilotv1.NodeStatus) *pilotv1.Node {
	t.Helper()
	var n *pilotv1.Node
	waitFor(t, timeout, fmt.Sprintf("node %s to be %v", nodeID, want), func() (bool, string) {
		n = nodeByID(p.cluster(clusterID), nodeID)
		return n != nil && slices.Contains(want, n.Status), fmt.Sprint(n.GetStatus())
	})
	return n
}

// TestDockerNodeStoppedOrRemovedByHand stops, then removes, a replica's
// container behind Hangar's back. Stopped: the node is reported within
// seconds, and its instance, which nobody stopped through Hangar, is
// started again and its services with it. Removed: the node is reported
// lost, and `recover` brings it back with the same node id in a new
// container, serving the data again.
func TestDockerNodeStoppedOrRemovedByHand(t *testing.T) {
	p, dc, rt := dockerPilot(t, "kv")
	p.mustHangar("app", "push", "examples/kv")
	c, job := createClusterOn(t, p, rt, "kv", map[string]string{"cluster.replica.count": "1"})
	mustSucceed(t, job)
	primary, replica := byRole(c, "primary")[0], byRole(c, "replica")[0]
	kvPut(t, primary.InstanceId, primary.Address+":6380", "greeting", "hello")
	waitKV(t, replica.InstanceId, replica.Address+":6380", "greeting", "hello")

	if out, err := exec.Command("docker", "stop", "-t", "2", replica.InstanceId).CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v %s", err, out)
	}
	waitNodeStatus(t, p, c.Id, replica.Id, 15*time.Second, pilotv1.NodeStatus_NODE_STATUS_LOST, pilotv1.NodeStatus_NODE_STATUS_STARTING)
	waitNodeStatus(t, p, c.Id, replica.Id, 60*time.Second, pilotv1.NodeStatus_NODE_STATUS_ACTIVE)
	waitKV(t, replica.InstanceId, replica.Address+":6380", "greeting", "hello")

	if out, err := exec.Command("docker", "rm", "-f", replica.InstanceId).CombinedOutput(); err != nil {
		t.Fatalf("docker rm: %v %s", err, out)
	}
	waitNodeStatus(t, p, c.Id, replica.Id, 15*time.Second, pilotv1.NodeStatus_NODE_STATUS_LOST)
	p.mustHangar("cluster", "recover", c.Id, "--node", replica.Id, "--wait")
	back := waitNodeStatus(t, p, c.Id, replica.Id, 30*time.Second, pilotv1.NodeStatus_NODE_STATUS_ACTIVE)
	if back.InstanceId == "" || back.InstanceId == replica.InstanceId {
		t.Fatalf("recovered node %s runs instance %q; want a new one (the old was %s)", back.Id, back.InstanceId, replica.InstanceId)
	}
	ins, err := dc.ContainerInspect(context.Background(), back.InstanceId, client.ContainerInspectOptions{})
	if err != nil || !ins.Container.State.Running || ins.Container.Config.Labels["hangar/node"] != replica.Id {
		t.Fatalf("the recovered node's container: %v (labels %v)", err, ins.Container.Config.Labels)
	}
	waitKV(t, back.InstanceId, back.Address+":6380", "greeting", "hello")
}

// TestDockerPilotKilledMidCreate kills pilot as soon as the first
// container of a create exists and starts it again: the job resumes and
// succeeds, and every container of the runtime belongs to a node of the
// cluster or is the frontgate, none twice; the delete then removes all.
func TestDockerPilotKilledMidCreate(t *testing.T) {
	p, dc, rt := dockerPilot(t, "kv")
	p.mustHangar("app", "push", "examples/kv")
	ctx := context.Background()
	r, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", Runtime: rt, Params: map[string]string{"cluster.replica.count": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the create's first node container", func() (bool, string) {
		cs, _, _ := labelled(t, dc, "hangar/cluster="+r.Cluster.Id)
		return len(cs) > 0, fmt.Sprint(cs)
	})
	p.kill()
	crashRestart(t, p, nil)
	mustSucceed(t, waitTerminal(t, p, r.Job.Id, 3*time.Minute))
	c := p.cluster(r.Cluster.Id)

	cs, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", "hangar.docker/runtime="+rt)})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	frontgates := 0
	for _, x := range cs.Items {
		l := x.Labels
		switch {
		case l["hangar/role"] == "frontgate":
			frontgates++
		case l["hangar/cluster"] == c.Id && nodeByID(c, l["hangar/node"]) != nil:
			seen[l["hangar/node"]]++
		default:
			t.Errorf("container %v belongs to no node of the cluster (labels %v)", x.Names, l)
		}
	}
	if frontgates != 1 {
		t.Errorf("%d frontgate containers, want 1", frontgates)
	}
	for _, n := range c.Nodes {
		if seen[n.Id] != 1 {
			t.Errorf("node %s has %d containers, want 1", n.Id, seen[n.Id])
		}
	}
	p.mustHangar("cluster", "delete", c.Id, "--wait")
	assertNoneLabelled(t, dc, "hangar.docker/runtime="+rt)
}

// TestDockerAuthorImage follows docs/images.md as an app author would: add
// the drone to an image of one's own (here a Debian root filesystem with
// Redis and no drone, as a team's base image would be) with
// images/add-drone.Dockerfile, map the role to it, and deploy: the cluster
// runs on the author's image and serves.
func TestDockerAuthorImage(t *testing.T) {
	p, dc, rt := dockerPilot(t, "redis") // builds hangar/debian-redis:bookworm, the author's base
	const tag = "hangar-test/author-redis:1"
	build := exec.Command("docker", "build", "-q", "-f", "images/add-drone.Dockerfile", "--build-arg", "BASE=hangar/debian-redis:bookworm", "-t", tag, ".")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build with images/add-drone.Dockerfile: %v\n%s", err, out)
	}
	p.mustHangar("app", "push", "examples/redis")
	for _, role := range []string{"primary", "replica"} {
		p.mustHangar("image", "set", "--app", "redis", "--version", "1.0.0", "--role", role, "--runtime", rt, tag)
	}
	c, job := createClusterOn(t, p, rt, "redis", map[string]string{"cluster.replica.count": "1", "env.port": "6379"})
	mustSucceed(t, job)
	for _, n := range c.Nodes {
		ins, err := dc.ContainerInspect(context.Background(), n.InstanceId, client.ContainerInspectOptions{})
		if err != nil || ins.Container.Config.Image != tag {
			t.Fatalf("node %s runs %v (%v), want the author's %s", n.Id, ins.Container.Config, err, tag)
		}
	}
	primary, replica := byRole(c, "primary")[0], byRole(c, "replica")[0]
	if out, err := dockerExec(primary.InstanceId, "redis-cli", "-h", primary.Address, "set", "k", "v"); err != nil || strings.TrimSpace(out) != "OK" {
		t.Fatalf("SET on the primary: %v %s", err, out)
	}
	waitFor(t, 30*time.Second, "the replica to have the key", func() (bool, string) {
		out, err := dockerExec(replica.InstanceId, "redis-cli", "-h", replica.Address, "get", "k")
		return err == nil && strings.TrimSpace(out) == "v", out
	})
	p.mustHangar("cluster", "delete", c.Id, "--wait")
}

// TestDroneImageSize holds the drone's image, the base every instance
// image builds on, to its budget: at most 25 MB.
func TestDroneImageSize(t *testing.T) {
	dc := dockertest.Require(t)
	dockertest.Images(t, "drone-base")
	img, err := dc.ImageInspect(context.Background(), "hangar/drone-base:latest")
	if err != nil {
		t.Fatal(err)
	}
	const budget = 25_000_000
	if img.Size > budget {
		t.Errorf("hangar/drone-base is %d bytes, over its budget of %d", img.Size, budget)
	}
	t.Logf("hangar/drone-base: %.1f MB", float64(img.Size)/1e6)
}
