package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Pilot's etcd holds every tenant's state. Its CA also signs every
// frontgate and drone, so a valid certificate is not enough: only pilot's
// own may connect.
func TestEtcdAdmitsOnlyPilot(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	own, err := ownCredentials(ca, filepath.Join(dir, "tls"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, closeEtcd, err := openEtcd(ctx, Config{DataDir: dir}, own, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeEtcd()
	if _, err := c.Put(ctx, "/hangar/probe", "pilot"); err != nil {
		t.Fatalf("pilot's own certificate: %v", err)
	}

	for _, id := range []pki.Identity{
		{Kind: pki.KindFrontgate, ID: "fg-1"},
		{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"},
	} {
		key, _ := pki.NewKey()
		certPEM, _, err := ca.Issue(key.Public(), id, nil, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pki.EncodeKey(key)
		other, err := tlsutil.Save(t.TempDir(), keyPEM, certPEM, ca.CertPEM())
		if err != nil {
			t.Fatal(err)
		}
		oc, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop(), TLS: other.ClientConfig("127.0.0.1", pki.Identity{})})
		if err != nil {
			continue // refused while dialling: what we want
		}
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = oc.Get(rctx, "/hangar/probe")
		rcancel()
		oc.Close()
		if err == nil {
			t.Errorf("%s read pilot's etcd", id)
		}
	}
}
