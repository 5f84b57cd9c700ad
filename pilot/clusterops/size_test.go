package clusterops

import (
	"testing"

	"github.com/hangarhq/hangar/internal/limits"
)

// Moved from pilot/api with the node limit.
func TestMaxNodes(t *testing.T) {
	for _, tc := range []struct{ set, want int }{
		{0, limits.DefaultMaxClusterNodes},
		{-1, limits.DefaultMaxClusterNodes},
		{5, 5},
		{limits.MaxClusterNodesCeiling + 1, limits.MaxClusterNodesCeiling},
	} {
		if got := maxNodes(tc.set); got != tc.want {
			t.Errorf("MaxClusterNodes %d: limit %d, want %d", tc.set, got, tc.want)
		}
	}
}
