package sdk

import (
	"errors"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
)

func TestParseCapabilities(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want Capabilities
	}{
		{"none", nil, Capabilities{HostDirs: map[string]bool{}}},
		{"informational only", []string{"networks", "instances"}, Capabilities{HostDirs: map[string]bool{}}},
		{"local", []string{"networks", CapRunsOnPilotHost, "exclusive_host_dir:root_dir", "host_dir:bin_dir", "host_dir:ranges_dir"},
			Capabilities{RunsOnPilotHost: true, HostDirs: map[string]bool{"root_dir": true, "bin_dir": false, "ranges_dir": false}}},
		{"exclusive wins either order", []string{"exclusive_host_dir:a", "host_dir:a", "host_dir:b", "exclusive_host_dir:b"},
			Capabilities{HostDirs: map[string]bool{"a": true, "b": true}}},
		{"empty keys ignored", []string{"host_dir:", "exclusive_host_dir:"}, Capabilities{HostDirs: map[string]bool{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCapabilities(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCapabilities(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
	if got := ParseCapabilities([]string{"host_dir:z", "exclusive_host_dir:a"}).HostDirKeys(); !reflect.DeepEqual(got, []string{"a", "z"}) {
		t.Errorf("HostDirKeys = %v", got)
	}
}

func TestLifecycleCapabilitiesAndRequire(t *testing.T) {
	c := CapabilitiesOf(&providerv1.InfoResponse{Name: "cloud", Capabilities: []string{CapStopStart, CapResize, CapVolumes, "host_dir:bin"}})
	if !c.StopStart || !c.Resize || !c.Volumes || c.Snapshots || c.LiveResize || c.Provider != "cloud" {
		t.Fatalf("CapabilitiesOf = %+v", c)
	}
	if err := c.Require("recover (keep volume)", CapVolumes, CapStopStart, "host_dir:bin"); err != nil {
		t.Fatal(err)
	}
	err := c.Require("backup (device)", CapStopStart, CapSnapshots)
	want := `runtime provider "cloud" lacks capability "snapshots" needed by backup (device)`
	if err == nil || err.Error() != want {
		t.Fatalf("Require = %v, want %q", err, want)
	}
	if !errors.Is(err, ErrCapabilityMissing) || status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Require error: Is(ErrCapabilityMissing)=%v, code %v", errors.Is(err, ErrCapabilityMissing), status.Code(err))
	}
	if c.Has("informational") || c.Has("exclusive_host_dir:bin") {
		t.Error("Has reports capabilities not declared")
	}
}

// A provider embedding Base answers the optional calls with Unsupported,
// which CapabilityError reads back.
func TestBaseAnswersUnsupported(t *testing.T) {
	var b Base
	calls := map[string]func() error{
		"StopInstance":    func() error { _, err := b.StopInstance(t.Context(), nil); return err },
		"StartInstance":   func() error { _, err := b.StartInstance(t.Context(), nil); return err },
		"ResizeInstance":  func() error { _, err := b.ResizeInstance(t.Context(), nil); return err },
		"ListVolumes":     func() error { _, err := b.ListVolumes(t.Context(), nil); return err },
		"DeleteVolume":    func() error { _, err := b.DeleteVolume(t.Context(), nil); return err },
		"CreateSnapshot":  func() error { _, err := b.CreateSnapshot(t.Context(), nil); return err },
		"ListSnapshots":   func() error { _, err := b.ListSnapshots(t.Context(), nil); return err },
		"DeleteSnapshot":  func() error { _, err := b.DeleteSnapshot(t.Context(), nil); return err },
		"RestoreSnapshot": func() error { _, err := b.RestoreSnapshot(t.Context(), nil); return err },
	}
	for method, call := range calls {
		err := call()
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: %v, want Unimplemented", method, err)
		}
		var ce *CapabilityMissingError
		if !errors.As(CapabilityError(err, "p", "", "op"), &ce) || ce.Capability != MethodCapability(method) || ce.Capability == "" {
			t.Errorf("%s: CapabilityError = %v, want capability %q", method, CapabilityError(err, "p", "", "op"), MethodCapability(method))
		}
	}
}
