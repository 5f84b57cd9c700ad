package frontgate

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hangarhq/hangar/frontgate/internal/fakepilot"
	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// admits reports (as nil) whether the TLS server at rawURL admits creds
// (testca.Admitted).
func admits(ctx context.Context, rawURL string, creds *tlsutil.Creds) error {
	return testca.Admitted(ctx, rawURL, creds.ClientConfig("127.0.0.1", pki.Identity{}))
}

// refusedCert reports whether err is the server's refusal of the client
// certificate at the handshake.
func refusedCert(err error) bool {
	return err != nil && strings.Contains(err.Error(), "bad certificate")
}

// etcdClient is a client of the etcd at rawURL presenting creds.
func etcdClient(t *testing.T, rawURL string, creds *tlsutil.Creds) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{rawURL}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(), TLS: creds.ClientConfig("127.0.0.1", pki.Identity{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// probeRestricted checks, on the etcd of a restricted phase, that owner's
// certificate is admitted and each of others is refused at the handshake
// and writes nothing; it records the phase in *phases.
func probeRestricted(t *testing.T, phases *int, owner *tlsutil.Creds, others ...*tlsutil.Creds) func(*etcdserver.Server) {
	return func(srv *etcdserver.Server) {
		*phases++
		if err := admits(callCtx(t), srv.ClientURL(), owner); err != nil {
			t.Errorf("restricted etcd refused the frontgate's own certificate: %v", err)
		}
		for _, c := range others {
			if err := admits(callCtx(t), srv.ClientURL(), c); !refusedCert(err) {
				t.Errorf("restricted etcd and %s: %v, want the certificate refused at the handshake", c.Identity(), err)
			}
			// Auth is still off here: an admitted client could write.
			short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := etcdClient(t, srv.ClientURL(), c).Put(short, "/written-by/"+c.Identity().CommonName(), "x")
			cancel()
			if err == nil {
				t.Errorf("%s wrote to the restricted etcd", c.Identity())
			}
		}
	}
}

func TestFirstStartAdmitsOnlyTheFrontgateUntilAuthIsOn(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	ca := pilot.CA()
	cfg := config(t, pilot, t.TempDir())
	droneCreds := testca.Drone(t, ca, "cln-a", "cl-1")
	otherFG := testca.Creds(t, ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}, time.Hour)
	phases := 0
	cfg.onRestrictedEtcd = probeRestricted(t, &phases, testca.Creds(t, ca, fg1, time.Hour), droneCreds, otherFG)
	fg := start(t, cfg)
	if phases != 1 {
		t.Fatalf("first start went through %d restricted phases, want 1", phases)
	}
	pilot.WaitConnected(t, 15*time.Second)

	// Serving normally, etcd admits every certificate of the CA and leaves
	// the rest to RBAC: the drone is connected and denied.
	if err := admits(callCtx(t), fg.EtcdClientURL(), droneCreds); err != nil {
		t.Fatalf("started etcd and a drone's certificate: %v, want admitted", err)
	}
	d := etcdAs(t, fg, ca, droneCreds)
	if _, err := d.Get(callCtx(t), "/", clientv3.WithPrefix()); !denied(err) {
		t.Fatalf("drone with no cluster reading / = %v, want permission denied", err)
	}
	applyMetadata(t, pilot, "cl-1", map[string]string{"env/a": "1"}, "cln-a")
	if resp, err := d.Get(callCtx(t), "/clusters/cl-1/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reader of cl-1 reading it = %v, %v", resp, err)
	}
	// RBAC does not cover leases or maintenance; the frontgate refuses
	// them to everyone but itself.
	if _, err := d.Grant(callCtx(t), 60); !denied(err) {
		t.Fatalf("drone granting a lease = %v, want permission denied", err)
	}
	if _, err := d.Status(callCtx(t), fg.EtcdClientURL()); !denied(err) {
		t.Fatalf("drone asking the member's status = %v, want permission denied", err)
	}
	if _, err := fg.cli.Grant(callCtx(t), 60); err != nil {
		t.Fatalf("the frontgate granting a lease: %v", err)
	}
	if got := etcdTree(t, fg, ca, "/written-by/"); len(got) != 0 {
		t.Fatalf("writes during the restricted phase landed: %v", got)
	}
	// The peer port admits the frontgate alone, always.
	if err := admits(callCtx(t), fg.etcd.PeerURL(), droneCreds); !refusedCert(err) {
		t.Fatalf("etcd peer port and a drone's certificate: %v, want refused at the handshake", err)
	}

	// A restart finds auth on in the stored data: no restricted phase.
	fg.Stop()
	cfg.JoinToken = ""
	fg = start(t, cfg)
	if phases != 1 {
		t.Fatalf("restart went through a restricted phase (%d in all)", phases)
	}
	pilot.WaitConnected(t, 15*time.Second)
	if got := etcdTree(t, fg, ca, "/clusters/cl-1/"); got["/clusters/cl-1/env/a"] != "1" {
		t.Fatalf("after the restart etcd holds %v", got)
	}
	applyMetadata(t, pilot, "cl-1", map[string]string{"env/a": "2"}, "cln-a")
	if resp, err := etcdAs(t, fg, ca, droneCreds).Get(callCtx(t), "/clusters/cl-1/env/a"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Fatalf("reader of cl-1 after the restart = %v, %v", resp, err)
	}
}

// etcdConfig is the frontgate's etcd configuration for creds, on loopback.
func etcdConfig(t *testing.T, creds *tlsutil.Creds, dataDir string) etcdserver.Config {
	t.Helper()
	info := &transport.TLSInfo{
		CertFile:       filepath.Join(creds.Dir(), tlsutil.CertFile),
		KeyFile:        filepath.Join(creds.Dir(), tlsutil.KeyFile),
		TrustedCAFile:  filepath.Join(creds.Dir(), tlsutil.CAFile),
		ClientCertAuth: true,
	}
	return etcdserver.Config{DataDir: dataDir, ClientURL: "https://127.0.0.1:0", PeerURL: "https://127.0.0.1:0", ClientTLS: info, PeerTLS: info, WALSegmentBytes: 1 << 20}
}

func TestStartEtcdRepeatsAnInterruptedBootstrap(t *testing.T) {
	ca := testca.New(t)
	own := testca.Creds(t, ca, fg1, time.Hour)
	droneCreds := testca.Drone(t, ca, "cln-a", "cl-1")
	cfg := etcdConfig(t, own, t.TempDir())
	log := slog.New(slog.DiscardHandler)

	// A first start that stopped before auth was enabled leaves a member
	// without auth behind.
	srv, err := etcdserver.Start(callCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()

	phases := 0
	hook := probeRestricted(t, &phases, own, droneCreds)
	srv, cli, err := startEtcd(callCtx(t), cfg, fg1.CommonName(), log, hook)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cli.AuthStatus(callCtx(t))
	cli.Close()
	srv.Close()
	if err != nil || !st.Enabled || phases != 1 {
		t.Fatalf("after start: auth status %v, %v; %d restricted phases; want auth on after 1", st, err, phases)
	}

	srv, cli, err = startEtcd(callCtx(t), cfg, fg1.CommonName(), log, hook)
	if err != nil {
		t.Fatal(err)
	}
	cli.Close()
	srv.Close()
	if phases != 1 {
		t.Fatalf("a start with auth on went through a restricted phase (%d in all)", phases)
	}
}

func TestStartEtcdNeedsClientCertificates(t *testing.T) {
	cfg := etcdserver.Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20}
	_, _, err := startEtcd(callCtx(t), cfg, fg1.CommonName(), slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "client TLS with client certificates is required") {
		t.Fatalf("startEtcd without client TLS = %v, want the requirement named", err)
	}
}
