package api

import (
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// unboundedKV is examples/kv without config.json's bound on the replica
// count, as a hostile or careless package would be: pilot's own limit is
// then all that stands.
func unboundedKV(t *testing.T, edit func(dir string)) []byte {
	return copyPackage(t, func(d string) {
		replaceIn(t, filepath.Join(d, "config.json"), `"max": 9,`, `"max": 1000000000,`)
		if edit != nil {
			edit(d)
		}
	})
}

func TestClusterSizeLimit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxNodes int // Config.MaxClusterNodes
		edit     func(dir string)
		params   map[string]string
		want     []string // in the error; none: accepted
	}{
		{"a million replicas", 10, nil, map[string]string{"cluster.replica.count": "1000000"},
			[]string{"cluster.replica.count: 1000000 nodes", "at most 10 nodes in one cluster", "--max-cluster-nodes"}},
		{"one role at the limit, the sum over it", 10, nil, map[string]string{"cluster.replica.count": "10"},
			[]string{"cluster.primary.count 1 + cluster.replica.count 10: 11 nodes in all", "at most 10"}},
		{"the sum at the limit", 10, nil, map[string]string{"cluster.replica.count": "9"}, nil},
		{"ten thousand under the default", 0, nil, map[string]string{"cluster.replica.count": "10000"},
			[]string{"cluster.replica.count: 10000 nodes", "at most 1000 nodes"}},
		{"the default limit exactly", 0, nil, map[string]string{"cluster.replica.count": "999"}, nil},
		{"one over the default", 0, nil, map[string]string{"cluster.replica.count": "1000"},
			[]string{"cluster.primary.count 1 + cluster.replica.count 1000: 1001 nodes in all", "at most 1000"}},
		{"a count written into cluster.json", 10, func(d string) {
			replaceIn(t, filepath.Join(d, "cluster.json.mustache"), `"count": {{cluster.replica.count}}`, `"count": 5000`)
		}, nil, []string{"role replica (its count in cluster.json): 5000 nodes", "at most 10"}},
		{"a limit above the ceiling counts as the ceiling", 1 << 30, nil, map[string]string{"cluster.replica.count": "100000"},
			[]string{"cluster.replica.count: 100000 nodes", "at most 4096 nodes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, st := newServer(t, func(c *Config) { c.MaxClusterNodes = tc.maxNodes })
			if _, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: unboundedKV(t, tc.edit)}); err != nil {
				t.Fatal(err)
			}
			r, err := s.CreateCluster(asMember(), &pilotv1.CreateClusterRequest{App: "kv", Runtime: "local", Params: tc.params})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("a cluster within the limit was refused: %v", err)
				}
				if want, _ := strconv.Atoi(tc.params["cluster.replica.count"]); len(r.Cluster.Nodes) != 1+want {
					t.Fatalf("%d nodes created, want %d", len(r.Cluster.Nodes), 1+want)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", status.Convert(err).Message(), w)
				}
			}
			for _, prefix := range []string{store.ClustersPrefix, store.JobsPrefix} {
				if n := countKeys(t, st, prefix); n != 0 {
					t.Fatalf("a refused create stored %d keys under %s", n, prefix)
				}
			}
		})
	}
}

// The limit is checked before anything grows with the count: refusing a
// million nodes allocates about what refusing ten does, where building the
// node records alone took hundreds of MB.
func TestClusterSizeRefusedBeforeAllocating(t *testing.T) {
	s, _ := newServer(t)
	if _, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: unboundedKV(t, nil)}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := s.CreateCluster(asMember(), &pilotv1.CreateClusterRequest{App: "kv", Runtime: "local", Params: map[string]string{"cluster.replica.count": "1000000"}})
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Errorf("refusing a million nodes allocated %d MiB", grew>>20)
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
}
