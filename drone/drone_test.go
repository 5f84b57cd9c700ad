package drone

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEtcdEndpointsAreAlwaysTLS(t *testing.T) {
	got, err := EtcdEndpoints([]string{"http://10.0.0.2:2379", "https://10.0.0.3:2379", "10.0.0.4:2379"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://10.0.0.2:2379 https://10.0.0.3:2379 https://10.0.0.4:2379"; strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	for _, bad := range []string{"unix:///run/etcd.sock", "https://", "http://%zz"} {
		if _, err := EtcdEndpoints([]string{bad}); err == nil || !strings.Contains(err.Error(), "etcd_endpoints[0]") {
			t.Errorf("%q: got %v, want an error naming etcd_endpoints[0]", bad, err)
		}
	}
}
