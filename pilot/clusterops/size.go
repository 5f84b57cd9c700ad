package clusterops

import (
	"fmt"
	"strings"

	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/limits"
)

// maxNodes is pilot --max-cluster-nodes (n), within what the other limits
// hold.
func maxNodes(n int) int {
	if n <= 0 {
		return limits.DefaultMaxClusterNodes
	}
	return min(n, limits.MaxClusterNodesCeiling)
}

// checkClusterSize refuses a spec with more than maxNodes nodes in one role or
// in all roles together. Each role is named by the parameter that set its
// count when there is one (cluster.<role>.count), else by the role and
// cluster.json, so the user knows what to change.
func checkClusterSize(spec *apppkg.ClusterSpec, vals *apppkg.Values, maxNodes int) error {
	limit := fmt.Sprintf("this pilot allows at most %d nodes in one cluster (pilot --max-cluster-nodes)", maxNodes)
	total := 0
	var parts []string
	for _, n := range spec.Nodes {
		what := countSource(n, vals)
		// Per role first, and before adding: a sum of huge counts must
		// not overflow into an acceptable number.
		if n.Count > maxNodes {
			return fmt.Errorf("%s: %d nodes; %s", what, n.Count, limit)
		}
		total += n.Count
		if n.Count > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", what, n.Count))
		}
	}
	if total > maxNodes {
		return fmt.Errorf("%s: %d nodes in all; %s", strings.Join(parts, " + "), total, limit)
	}
	return nil
}

// countSource names what set a role's count: its count parameter when the
// rendered count is that parameter's value, else the role in cluster.json.
func countSource(n apppkg.NodeSpec, vals *apppkg.Values) string {
	param := vals.CountPath(n.Role)
	if v, ok := vals.Get(param); ok {
		if c, ok := v.(int64); ok && c == int64(n.Count) {
			return param
		}
	}
	if n.Role == "" {
		return "the count in cluster.json"
	}
	return fmt.Sprintf("role %s (its count in cluster.json)", n.Role)
}
