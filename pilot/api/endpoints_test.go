package api

import (
	"strconv"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

// A role's endpoint lists that role's nodes only; a cluster-level one is
// listed once, with no node claimed to serve it.
func TestEndpointsByRole(t *testing.T) {
	spec := &apppkg.ClusterSpec{
		Env: apppkg.Env{"port": "2181"},
		Nodes: []apppkg.NodeSpec{
			{Role: "master", Env: apppkg.Env{"port": "6379"}},
			{Role: "web"},
		},
		Endpoints: map[string]apppkg.Endpoint{
			"client": {Port: apppkg.Port{Ref: "env.port"}, Protocol: "tcp"},
			"redis":  {Port: apppkg.Port{Ref: "master.env.port"}, Protocol: "tcp"},
		},
	}
	c := &pilotv1.Cluster{Nodes: []*pilotv1.Node{
		{Id: "n1", Role: "master", Address: "10.0.0.1"},
		{Id: "n2", Role: "master", Address: "10.0.0.2"},
		{Id: "n3", Role: "web", Address: "10.0.0.3"},
	}}
	var got []string
	for _, e := range Endpoints(c, spec) {
		got = append(got, e.Name+" "+e.Role+" "+e.Address+" "+e.Protocol+" "+strconv.Itoa(int(e.Port)))
	}
	want := []string{"client   tcp 2181", "redis master 10.0.0.1 tcp 6379", "redis master 10.0.0.2 tcp 6379"}
	if len(got) != len(want) {
		t.Fatalf("endpoints %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("endpoints %q, want %q", got, want)
		}
	}
}
