package clusterops

import (
	"context"
	"errors"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// Roles take their image from the image map, else from cluster.json; a
// runtime that needs images refuses a role without one, or an image it
// lacks, before anything is created; new nodes of a scale-out take the
// map's image too.
func TestImageMap(t *testing.T) {
	h := opsappHarnessPkg(t)
	ctx := context.Background()
	app, version := h.pkg.Meta.Name, h.pkg.Meta.Version
	setImage := func(role, image string) {
		t.Helper()
		m := &pilotv1.ImageMapping{App: app, Version: version, Role: role, Runtime: harnessRuntime, Image: image, Tenant: harnessTenant}
		if err := h.st.Put(ctx, store.ImageKey(harnessTenant, app, version, harnessRuntime, role), m); err != nil {
			t.Fatal(err)
		}
	}
	h.prov.imagesRequired = true
	h.prov.images = []string{"img-lead-2", "img-member-7"}

	// lead has no image anywhere: refused, naming app, version, role and
	// runtime.
	_, err := h.life.Create(ctx, CreateRequest{Tenant: harnessTenant, App: app, AppVersion: version, Runtime: harnessRuntime})
	var re *RefusedError
	if !errors.As(err, &re) || re.Reason != Invalid {
		t.Fatalf("create without images: %v, want a refusal", err)
	}
	for _, want := range []string{"no image for role lead", app, version, harnessRuntime, "hangar image set"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not name %q", err, want)
		}
	}
	if list, _ := store.List(ctx, h.st, store.ClustersPrefix, newCluster); len(list) != 0 {
		t.Fatalf("a refused create stored %d clusters", len(list))
	}

	setImage("lead", "img-lead-2")
	setImage("member", "img-member-9")
	_, err = h.life.Create(ctx, CreateRequest{Tenant: harnessTenant, App: app, AppVersion: version, Runtime: harnessRuntime})
	if err == nil || !strings.Contains(err.Error(), `image "img-member-9" (role member`) || !strings.Contains(err.Error(), "img-member-7") {
		t.Fatalf("an image the runtime lacks: %v", err)
	}

	setImage("member", "img-member-7")
	r := h.create(t, nil)
	h.runJob(t, r.Job)
	for _, in := range h.prov.instances {
		if in.Image != "img-lead-2" && in.Image != "img-member-7" && in.Image != "frontgate" {
			t.Fatalf("instance %s runs image %q", in.Id, in.Image)
		}
	}
	c, rev := h.cluster(t, r.Cluster.Id)
	for _, n := range c.Nodes {
		if want := map[string]string{"lead": "img-lead-2", "member": "img-member-7"}[n.Role]; n.Image != want {
			t.Fatalf("node %s (%s) image %q, want %q", n.Id, n.Role, n.Image, want)
		}
	}

	// A scale-out's new nodes take the map's image of now.
	h.prov.images = append(h.prov.images, "img-member-8")
	setImage("member", "img-member-8")
	sc, err := h.life.Scale(ctx, OpRequest{C: c, Rev: rev}, "member", countRole(c, "member")+1)
	if err != nil {
		t.Fatal(err)
	}
	h.runJob(t, sc.Job)
	c, _ = h.cluster(t, r.Cluster.Id)
	newest := c.Nodes[len(c.Nodes)-1]
	if newest.Image != "img-member-8" {
		t.Fatalf("scale-out node image %q, want img-member-8", newest.Image)
	}
}

func countRole(c *pilotv1.Cluster, role string) int {
	n := 0
	for _, nd := range c.Nodes {
		if nd.Role == role {
			n++
		}
	}
	return n
}

// opsappHarnessPkg is a harness over opsapp whose lead role names no
// image in its container.
func opsappHarnessPkg(t *testing.T) *opsHarness {
	t.Helper()
	dir := copyDir(t, "../../tests/e2e/testdata/opsapp", "", func(s string) string {
		old := `"container": {"type": "docker", "image": "hangar/opsapp:1.0"}`
		if !strings.Contains(s, old) {
			t.Fatalf("opsapp's container changed: %q not found", old)
		}
		return strings.Replace(s, old, `"container": {"type": "docker"}`, 1)
	})
	return newOpsHarnessWith(t, dir)
}
