package sdk

import (
	"reflect"
	"testing"
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
