package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
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
// runtime "docker", and builds the images names.
func dockerPilot(t *testing.T, images ...string) (*pilot, *client.Client) {
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
	gw := gwAddr.String()
	_, port, _ := net.SplitHostPort(freePort(t))
	p := startPilotAt(t, net.JoinHostPort(gw, port))
	if _, err := p.runtimes.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "docker", Provider: "docker", Zone: "docker"}); err != nil {
		t.Fatalf("create the docker runtime: %v", err)
	}
	t.Cleanup(func() {
		// After the harness's own cleanup (clusters deleted, pilot
		// stopped: registered earlier, so run later): nothing of the
		// runtime may be left.
		if !t.Failed() {
			assertNoneLabelled(t, dc, "hangar.docker/runtime=docker")
		}
	})
	return p, dc
}

// labelled lists what carries label (key=value): containers, networks,
// volumes, by name.
func labelled(t *testing.T, dc *client.Client, label string) (containers, networks, volumes []string) {
	t.Helper()
	ctx := context.Background()
	f := make(client.Filters).Add("label", label)
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

func assertNoneLabelled(t *testing.T, dc *client.Client, label string) {
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
	p, dc := dockerPilot(t, "kv")
	p.mustHangar("app", "push", "examples/kv")
	c, job := createClusterOn(t, p, "docker", "kv", map[string]string{"cluster.replica.count": "1"})
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
	fg, _, _ := labelled(t, dc, "hangar/role=frontgate")
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
	assertNoneLabelled(t, dc, "hangar.docker/runtime=docker")
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
