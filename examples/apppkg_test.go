package examples_test

import (
	"strings"
	"testing"

	"github.com/hangarhq/hangar/internal/apppkg"
)

// TestPackagesLoadInHangar checks each example against Hangar's own
// package loader: it loads, its defaults resolve and render, and bad
// values are refused by name.
func TestPackagesLoadInHangar(t *testing.T) {
	tests := []struct {
		dir   string
		roles []string
		bad   map[string]string // param -> value the package must refuse
	}{
		{"kv", []string{"primary", "replica"}, map[string]string{
			"env.port": "80", "cluster.primary.count": "2", "cluster.replica.count": "10", "env.motd": "two\nlines",
		}},
		{"redis", []string{"primary", "replica"}, map[string]string{
			"env.port": "80", "cluster.primary.count": "2", "env.appendonly": "maybe", "env.maxmemory-policy": "lru",
		}},
		{"mariadb", []string{"primary", "replica"}, map[string]string{
			"env.port": "80", "cluster.primary.count": "2", "cluster.replica.count": "0",
			"env.admin_password": "short", "env.replication_password": "it's-a-password",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			p, err := apppkg.LoadDir(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			v, err := p.Resolve(map[string]string{"cluster.replica.count": "3"})
			if err != nil {
				t.Fatal(err)
			}
			spec, err := p.Render(v)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(spec.Roles(), ","); got != strings.Join(tt.roles, ",") {
				t.Fatalf("roles = %s, want %v", got, tt.roles)
			}
			if n, _ := spec.Node("replica"); n.Count != 3 {
				t.Fatalf("replica count = %d, want 3", n.Count)
			}
			for key, val := range tt.bad {
				if _, err := p.Resolve(map[string]string{key: val}); err == nil || !strings.Contains(err.Error(), key) {
					t.Errorf("%s=%q: err = %v, want a refusal naming %s", key, val, err, key)
				}
			}
		})
	}
}
