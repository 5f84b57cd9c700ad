package enroll

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/internal/pki"
)

// Pilot keeps the key it certified last for each drone — at join, at a
// retried join and at every renewal — and none for frontgates.
func TestDroneKeyFollowsCertifiedKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	drone := pki.Identity{Kind: pki.KindDrone, ID: "n1", Cluster: "c1"}
	fg := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}

	if _, err := e.tokens.DroneKey(ctx, drone); !errors.Is(err, ErrNoDroneKey) {
		t.Fatalf("before the join: %v, want ErrNoDroneKey", err)
	}
	tok, err := e.tokens.Issue(ctx, drone, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k1, csr1 := newCSR(t)
	cert, _, err := e.tokens.Redeem(ctx, joinReq(tok, csr1))
	if err != nil {
		t.Fatal(err)
	}
	same := func(what string, want *ecdsa.PublicKey) {
		t.Helper()
		got, err := e.tokens.DroneKey(ctx, drone)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !want.Equal(got) {
			t.Fatalf("%s: recorded key is not the certified one", what)
		}
	}
	same("after the join", k1.Public().(*ecdsa.PublicKey))

	k2, csr2, proof := renewal(t, k1)
	if _, _, err := e.tokens.Renew(ctx, []byte(cert.CertificatePem), csr2, proof, drone); err != nil {
		t.Fatal(err)
	}
	same("after a renewal", k2.Public().(*ecdsa.PublicKey))

	// A retried join with the first key certifies it again, so it is the
	// one to seal to again.
	if _, _, err := e.tokens.Redeem(ctx, joinReq(tok, csr1)); err != nil {
		t.Fatal(err)
	}
	same("after a retried join", k1.Public().(*ecdsa.PublicKey))

	ftok, err := e.tokens.Issue(ctx, fg, []net.IP{net.ParseIP("127.0.0.9")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, fcsr := newCSR(t)
	if _, _, err := e.tokens.Redeem(ctx, joinReq(ftok, fcsr)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tokens.DroneKey(ctx, fg); err == nil {
		t.Fatal("DroneKey answered for a frontgate identity")
	}
	resp, err := e.client.Get(ctx, DroneKeysPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != DroneKeysPrefix+"c1/n1" {
		t.Fatalf("drone key records: %v, want only c1/n1", resp.Kvs)
	}
	if resp.Kvs[0].Lease == 0 {
		t.Error("drone key record has no lease: it would outlive the drone")
	}
}
