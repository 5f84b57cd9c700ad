package gateway

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

func TestCheckUTF8(t *testing.T) {
	const bad = "a\xffb"
	for _, tc := range []struct {
		name string
		msg  proto.Message
		want string // the path named; "" when valid
	}{
		{"all valid", &pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{"env.motd": "héllo"}}, ""},
		{"empty", &pilotv1.GetClusterRequest{}, ""},
		{"bytes are not text", &pilotv1.PushAppRequest{Archive: []byte(bad)}, ""},
		{"a field", &pilotv1.GetClusterRequest{Id: bad}, "id"},
		{"the second field", &pilotv1.CreateClusterRequest{App: "kv", AppVersion: bad}, "app_version"},
		{"a map value", &pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{"env.motd": bad}}, `params["env.motd"]`},
		{"a map key", &pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{bad: "x"}}, "params (a key)"},
		{"a list element", &pilotv1.App{Name: "kv", Roles: []string{"primary", bad}}, "roles[1]"},
		{"a nested message", &pilotv1.Cluster{Id: "cl-1", Nodes: []*pilotv1.Node{{Id: "n1"}, {Id: "n2", Address: bad}}}, "nodes[1].address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkUTF8(tc.msg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkUTF8 = %v, want nil", err)
				}
				return
			}
			want := tc.want + ": not valid UTF-8; every string in a request must be UTF-8 text"
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
				t.Fatalf("checkUTF8 = %v, want InvalidArgument %q", err, want)
			}
		})
	}
	// Not a proto message: nothing to check, nothing refused.
	if err := checkUTF8("plain"); err != nil {
		t.Fatal(err)
	}
}
