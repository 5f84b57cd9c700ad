package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// The image map on a local runtime with images_dir: each role of a
// cluster runs the image the map gives it, else the one its cluster.json
// names, and an instance's root starts as that image's tree. A role whose
// image the runtime lacks fails the create, naming app, version, role and
// runtime, with nothing created.
func TestImageMap(t *testing.T) {
	p := startPilot(t)
	images := t.TempDir()
	if err := os.Chmod(images, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, img := range []string{"img-zkens", "img-mq", "img-mq-proxy", "mq-disc-2"} {
		marker := filepath.Join(images, img, "etc", "image")
		if err := os.MkdirAll(filepath.Dir(marker), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(marker, []byte(img+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := p.runtimes.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "local", Provider: "local", Zone: "local",
		Config: map[string]string{"images_dir": images}}); err != nil {
		t.Fatalf("create runtime: %v", err)
	}
	p.mustHangar("app", "push", "tests/e2e/testdata/zkens-3.4.13")
	p.mustHangar("app", "push", "tests/e2e/testdata/mq")
	zk, job := createCluster(t, p, "zkens", nil)
	mustSucceed(t, job)

	out := p.mustHangar("image", "set", "--app", "mq", "--version", "1.0.0", "--role", "disc", "--runtime", "local", "mq-disc-2")
	if !strings.Contains(out, "Role disc of mq 1.0.0 runs mq-disc-2 on runtime local") {
		t.Fatalf("image set:\n%s", out)
	}
	if out, err := p.hangar("image", "set", "--app", "mq", "--version", "1.0.0", "--role", "dsic", "--runtime", "local", "x"); err == nil || !strings.Contains(out, `role "dsic"`) {
		t.Fatalf("image set for a role the app lacks: %v\n%s", err, out)
	}
	if out := p.mustHangar("image", "list"); !strings.Contains(out, "mq-disc-2") {
		t.Fatalf("image list:\n%s", out)
	}

	mq, job := createCluster(t, p, "mq", map[string]string{"cluster.zk_service": zk.Id})
	mustSucceed(t, job)
	want := map[string]string{"disc": "mq-disc-2", "ram": "img-mq", "proxy": "img-mq-proxy", "": "img-zkens"}
	for _, c := range []*pilotv1.Cluster{zk, mq} {
		for _, n := range c.Nodes {
			b, err := os.ReadFile(filepath.Join(p.instanceRoot(n.InstanceId), "etc", "image"))
			if err != nil || strings.TrimSpace(string(b)) != want[n.Role] {
				t.Errorf("node %s (role %q) runs image %q (%v), want %s", n.Id, n.Role, b, err, want[n.Role])
			}
			if n.Image != want[n.Role] {
				t.Errorf("node %s (role %q) records image %q, want %s", n.Id, n.Role, n.Image, want[n.Role])
			}
		}
	}

	// The runtime lacks a role's image: refused before anything exists.
	if err := os.RemoveAll(filepath.Join(images, "img-mq-proxy")); err != nil {
		t.Fatal(err)
	}
	before, _ := p.clusters.ListClusters(ctx, &pilotv1.ListClustersRequest{})
	instances, _ := os.ReadDir(filepath.Join(p.runtimeRoot(), "instances"))
	_, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "mq", Runtime: "local", Params: map[string]string{"cluster.zk_service": zk.Id}})
	if err == nil {
		t.Fatal("a create whose image the runtime lacks was accepted")
	}
	for _, w := range []string{`"img-mq-proxy"`, "role proxy", "mq 1.0.0", "runtime local"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not name %s", err, w)
		}
	}
	after, _ := p.clusters.ListClusters(ctx, &pilotv1.ListClustersRequest{})
	instancesAfter, _ := os.ReadDir(filepath.Join(p.runtimeRoot(), "instances"))
	if len(after.GetClusters()) != len(before.GetClusters()) || len(instancesAfter) != len(instances) {
		t.Fatalf("a refused create left clusters %d → %d, instances %d → %d", len(before.GetClusters()), len(after.GetClusters()), len(instances), len(instancesAfter))
	}
	p.mustHangar("image", "unset", "--app", "mq", "--version", "1.0.0", "--role", "disc", "--runtime", "local")
	if out := p.mustHangar("image", "list"); strings.Contains(out, "mq-disc-2") {
		t.Fatalf("image list after unset:\n%s", out)
	}
}
