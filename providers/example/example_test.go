package example_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/conformance"
	"github.com/hangarhq/hangar/providers/example"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConformance is what every provider's own test should be: build the
// plugin, start it as pilot does, run the suite through it.
func TestConformance(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hangar-provider-example")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/hangarhq/hangar/cmd/hangar-provider-example").CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	rt := &providerv1.Runtime{Id: "example-test", Zone: "zone-a", Credentials: map[string]string{"api_key": example.APIKey}}
	conformance.Run(t, func(t *testing.T) providerv1.ProviderClient { return conformance.StartPlugin(t, bin) }, rt, "any-image")
}
