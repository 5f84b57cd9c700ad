package selfview

import (
	"maps"
	"testing"
)

func TestValues(t *testing.T) {
	roled := map[string]string{
		"hosts/master/i-1/node_id":    "cln-1",
		"hosts/master/i-1/ip":         "10.0.0.1",
		"hosts/replica/i-2/node_id":   "cln-2",
		"hosts/replica/i-2/ip":        "10.0.0.2",
		"env/maxmemory":               "100mb",
		"env/port":                    "6379",
		"roles/replica/env/maxmemory": "200mb",
		"roles/master/env/only":       "m",
		"cluster/cluster_id":          "cl-a",
		"host/ip":                     "stray",
	}
	roleless := map[string]string{
		"hosts/i-1/node_id": "cln-1",
		"hosts/i-1/role":    "",
		"hosts/i-1/ip":      "10.0.0.1",
		"env/port":          "2181",
	}
	for _, tc := range []struct {
		name   string
		tree   map[string]string
		nodeID string
		want   map[string]string // a subset of the view
		absent []string
	}{
		{"role env wins over cluster env", roled, "cln-2", map[string]string{
			"/self/env/maxmemory": "200mb", "/self/env/port": "6379", "/self/host/ip": "10.0.0.2",
			"/self/hosts/master/i-1/ip": "10.0.0.1", "/self/cluster/cluster_id": "cl-a",
		}, []string{"/self/env/only", "/self/roles/replica/env/maxmemory"}},
		{"another role's env stays out", roled, "cln-1", map[string]string{
			"/self/env/maxmemory": "100mb", "/self/env/only": "m", "/self/host/ip": "10.0.0.1",
		}, nil},
		{"a stray host/ key does not shadow the node's own", roled, "cln-9", map[string]string{
			"/self/env/maxmemory": "100mb",
		}, []string{"/self/host/ip"}},
		{"role-less", roleless, "cln-1", map[string]string{
			"/self/host/ip": "10.0.0.1", "/self/hosts/i-1/ip": "10.0.0.1", "/self/env/port": "2181",
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Values(tc.nodeID, tc.tree)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s is in the view: %q", k, got[k])
				}
			}
			src := Sources(tc.nodeID, tc.tree)
			if !maps.EqualFunc(got, src, func(v, from string) bool { return tc.tree[from] == v }) {
				t.Errorf("Values and Sources disagree")
			}
		})
	}
}
