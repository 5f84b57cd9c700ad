package local

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/providerv1"
)

// With images_dir, a runtime says its instances need an image and which
// it has; an instance's root starts as its image's tree; an unknown image,
// or a name that leaves images_dir, is refused before anything is made.
func TestImagesDir(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	images := openDir(t)
	for name, body := range map[string]string{
		"web-1/opt/app/bin/start.sh":    "#!/bin/sh\necho web\n",
		"web-1/etc/confd/conf.d/x.toml": "[template]\n",
		"db-2/opt/db/VERSION":           "2\n",
	} {
		p := filepath.Join(images, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("start.sh", filepath.Join(images, "web-1/opt/app/bin/run")); err != nil {
		t.Fatal(err)
	}
	rt.Config[keyImagesDir] = images
	p := newProvider(t, Config{})
	resp, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetImagesRequired() || !slices.Equal(resp.GetImages(), []string{"db-2", "web-1"}) {
		t.Fatalf("images required %v, images %v", resp.GetImagesRequired(), resp.GetImages())
	}

	n := mustNetwork(t, p, rt, "n")
	in := mustRun(t, p, rt, n.GetId(), "web", "web-1")
	defer mustDelete(t, p, rt, in.GetId())
	root := filepath.Join(rt.Config[keyRootDir], "instances", in.GetId(), rootDir)
	b, err := os.ReadFile(filepath.Join(root, "opt/app/bin/start.sh"))
	if err != nil || string(b) != "#!/bin/sh\necho web\n" {
		t.Fatalf("seeded start.sh: %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(root, "opt/app/bin/run")); err != nil || target != "start.sh" {
		t.Fatalf("seeded link: %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(root, "opt/db")); err == nil {
		t.Fatal("another image's files were seeded")
	}
	// The frontgate runs its binary, not a folder of images_dir.
	fg := mustRun(t, p, rt, n.GetId(), "fg", frontgateImage)
	defer mustDelete(t, p, rt, fg.GetId())

	for _, bad := range []string{"nope", "../web-1", ".hidden", ""} {
		_, err := p.RunInstance(t.Context(), runReq(rt, n.GetId(), "bad-"+bad, bad))
		wantCode(t, err, codes.InvalidArgument, "image")
	}

	// A link out of the image is refused when seeding.
	if err := os.Symlink("/etc/passwd", filepath.Join(images, "db-2/opt/db/passwd")); err != nil {
		t.Fatal(err)
	}
	_, err = p.RunInstance(t.Context(), runReq(rt, n.GetId(), "db", "db-2"))
	wantCode(t, err, codes.Internal, "leaves the image")
	list, err := p.ListInstances(t.Context(), &providerv1.ListInstancesRequest{Runtime: rt, NetworkId: n.GetId()})
	if err != nil || len(list.GetInstances()) != 2 {
		t.Fatalf("instances after refusals: %v, %v", list.GetInstances(), err)
	}
}
