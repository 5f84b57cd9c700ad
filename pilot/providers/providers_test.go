package providers

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/providers/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestCapabilitiesAndRequire(t *testing.T) {
	dir := t.TempDir()
	build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(dir, "hangar-provider-local"), "github.com/hangarhq/hangar/cmd/hangar-provider-local")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the local provider: %v\n%s", err, out)
	}
	h := New(dir, nil)
	defer h.Close()

	caps, err := h.Capabilities(t.Context(), "local")
	if err != nil {
		t.Fatal(err)
	}
	if caps.Provider != "local" || !caps.StopStart || !caps.Resize || !caps.Volumes || !caps.Snapshots {
		t.Fatalf("Capabilities(local) = %+v", caps)
	}
	if err := h.Require(t.Context(), "local", "backup (device)", sdk.CapSnapshots, sdk.CapStopStart); err != nil {
		t.Fatalf("Require of declared capabilities: %v", err)
	}
	err = h.Require(t.Context(), "local", "resize (live)", sdk.CapResize, sdk.CapLiveResize)
	var ce *sdk.CapabilityMissingError
	if !errors.As(err, &ce) || !errors.Is(err, sdk.ErrCapabilityMissing) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Require of live_resize: %v, want a CapabilityMissingError (FailedPrecondition)", err)
	}
	if want := `runtime provider "local" lacks capability "live_resize" needed by resize (live)`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if _, err := h.Capabilities(t.Context(), "nosuch"); err == nil {
		t.Error("Capabilities of a provider without a binary succeeded")
	}
}

func TestUnsupported(t *testing.T) {
	err := Unsupported(sdk.Unsupported(sdk.CapSnapshots, "CreateSnapshot"), "p", sdk.CapVolumes, "backup")
	var ce *sdk.CapabilityMissingError
	if !errors.As(err, &ce) || ce.Capability != sdk.CapSnapshots || ce.Provider != "p" || ce.Operation != "backup" {
		t.Fatalf("Unsupported = %#v", err)
	}
	plain := status.Error(codes.Unimplemented, "unknown method ResizeInstance")
	if err := Unsupported(plain, "old", sdk.CapResize, "resize"); !errors.As(err, &ce) || ce.Capability != sdk.CapResize {
		t.Fatalf("Unsupported of an old provider's answer = %v", err)
	}
	other := status.Error(codes.NotFound, "no such instance")
	if err := Unsupported(other, "p", sdk.CapResize, "resize"); err != other {
		t.Fatalf("Unsupported changed another error: %v", err)
	}
}
