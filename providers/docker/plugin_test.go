package docker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/dockertest"
	"github.com/hangarhq/hangar/providers/conformance"
)

// testImage runs a stand-in drone that only waits for SIGTERM (make images
// IMAGES=conformance): the suite checks the provider, not the agent.
const testImage = "hangar/conformance:latest"

func buildTestImage(t *testing.T) {
	t.Helper()
	dockertest.Images(t, "drone-base", "frontgate", "conformance")
}

func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hangar-provider-docker")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/hangarhq/hangar/cmd/hangar-provider-docker").CombinedOutput()
	if err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}
	return bin
}

func startPlugin(t *testing.T, bin string) providerv1.ProviderClient {
	return conformance.StartPlugin(t, bin)
}

// runtimeFor is a runtime of its own for t, so that what it creates is
// told apart by label from any other test's.
func runtimeFor(t *testing.T) *providerv1.Runtime {
	// The pid: two runs of these tests at once (two checkouts) share
	// the Engine, and must not share runtimes.
	return &providerv1.Runtime{Id: fmt.Sprintf("rt-test-%d-%s", os.Getpid(), strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")), Zone: "docker"}
}

func TestConformanceThroughPlugin(t *testing.T) {
	c := dockertest.Require(t)
	buildTestImage(t)
	bin := buildPlugin(t)
	rt := runtimeFor(t)
	conformance.Run(t, func(t *testing.T) providerv1.ProviderClient { return startPlugin(t, bin) }, rt, testImage)
	assertNothingLabelled(t, c, rt.GetId())
}

// assertNothingLabelled fails when anything of the runtime is left.
func assertNothingLabelled(t *testing.T, c *client.Client, runtimeID string) {
	t.Helper()
	ctx := context.Background()
	f := make(client.Filters).Add("label", "hangar.docker/runtime="+runtimeID)
	cs, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := c.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range cs.Items {
		t.Errorf("container %v of runtime %s left behind", x.Names, runtimeID)
	}
	for _, x := range ns.Items {
		t.Errorf("network %s of runtime %s left behind", x.Name, runtimeID)
	}
	for _, x := range vs.Items {
		t.Errorf("volume %s of runtime %s left behind", x.Name, runtimeID)
	}
}
