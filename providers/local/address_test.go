package local

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/providerv1"
)

// A reserved address is one no instance gets; a retry answers the same;
// a released one is free again.
func TestReservedAddresses(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	n := mustNetwork(t, p, rt, "n")
	ctx := t.Context()
	reserve := func(token string) string {
		t.Helper()
		r, err := p.ReserveAddress(ctx, &providerv1.ReserveAddressRequest{Runtime: rt, NetworkId: n.GetId(), IdempotencyToken: token})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetAddress()
	}
	vip := reserve("vip")
	if again := reserve("vip"); again != vip {
		t.Fatalf("a retry reserved %s, then %s", vip, again)
	}
	in := mustRun(t, p, rt, n.GetId(), "i", "drone")
	defer mustDelete(t, p, rt, in.GetId())
	if in.GetAddress() == vip {
		t.Fatalf("an instance got the reserved address %s", vip)
	}
	if _, err := p.ReleaseAddress(ctx, &providerv1.ReleaseAddressRequest{Runtime: rt, NetworkId: n.GetId(), Address: vip}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReleaseAddress(ctx, &providerv1.ReleaseAddressRequest{Runtime: rt, NetworkId: n.GetId(), Address: vip}); err != nil {
		t.Fatalf("releasing twice: %v", err)
	}
	if next := reserve("vip-2"); next != vip {
		t.Fatalf("after the release the lowest free address is %s, want %s again", next, vip)
	}
	_, err := p.ReserveAddress(ctx, &providerv1.ReserveAddressRequest{Runtime: rt, NetworkId: "net-00000000", IdempotencyToken: "x"})
	wantCode(t, err, codes.NotFound, "net-00000000")
	_, err = p.ReserveAddress(ctx, &providerv1.ReserveAddressRequest{Runtime: rt, NetworkId: n.GetId()})
	wantCode(t, err, codes.InvalidArgument, "idempotency_token")
}
