package etcdserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/internal/pki"
)

// TestFullAccessCNs runs a member where only frontgate:fg-1 has full
// access, with etcd auth off (so only the guard stands in the way), and
// checks what a drone's certificate may do: read and watch, nothing else.
func TestFullAccessCNs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, ca := tlsFiles(t)
	s, err := Start(ctx, Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20, ClientTLS: info, FullAccessCNs: []string{"frontgate:fg-1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	owner, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	lease, err := owner.Grant(ctx, 600)
	if err != nil {
		t.Fatalf("the full-access CN granting a lease: %v", err)
	}
	if _, err := owner.Put(ctx, "/clusters/cl-1/env/port", "7000"); err != nil {
		t.Fatalf("the full-access CN writing: %v", err)
	}
	if _, err := owner.Status(ctx, s.ClientURL()); err != nil {
		t.Fatalf("the full-access CN asking the status: %v", err)
	}

	creds := issue(t, ca, pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"})
	drone, err := clientv3.New(clientv3.Config{Endpoints: []string{s.ClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: creds.ClientConfig("127.0.0.1", pki.Identity{})})
	if err != nil {
		t.Fatal(err)
	}
	defer drone.Close()

	// Reads work: Range, and a Watch with progress notifications.
	got, err := drone.Get(ctx, "/clusters/cl-1/", clientv3.WithPrefix())
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("drone reading: %v, %v", got, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := drone.Watch(wctx, "/clusters/cl-1/", clientv3.WithPrefix(), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
	if wr := <-wch; wr.Err() != nil || !wr.Created {
		t.Fatalf("drone watch: %+v, %v", wr, wr.Err())
	}
	if err := drone.RequestProgress(ctx); err != nil {
		t.Fatalf("drone asking watch progress: %v", err)
	}
	if wr := <-wch; wr.Err() != nil || !wr.IsProgressNotify() {
		t.Fatalf("drone watch progress: %+v, %v", wr, wr.Err())
	}
	if _, err := owner.Put(ctx, "/clusters/cl-1/env/port", "7001"); err != nil {
		t.Fatal(err)
	}
	if wr := <-wch; wr.Err() != nil || len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "7001" {
		t.Fatalf("drone watch event: %+v, %v", wr, wr.Err())
	}

	lockc := v3lockpb.NewLockClient(drone.ActiveConnection())
	health := healthpb.NewHealthClient(drone.ActiveConnection())
	refused := []struct {
		call string
		op   func() error
	}{
		{"Put", func() error { _, err := drone.Put(ctx, "/clusters/cl-1/env/port", "1"); return err }},
		{"Delete", func() error { _, err := drone.Delete(ctx, "/clusters/cl-1/", clientv3.WithPrefix()); return err }},
		{"Txn", func() error {
			_, err := drone.Txn(ctx).Then(clientv3.OpGet("/clusters/cl-1/env/port")).Commit()
			return err
		}},
		{"Compact", func() error { _, err := drone.Compact(ctx, 1); return err }},
		{"LeaseGrant", func() error { _, err := drone.Grant(ctx, 86400); return err }},
		{"LeaseRevoke", func() error { _, err := drone.Revoke(ctx, lease.ID); return err }},
		{"LeaseKeepAlive", func() error { _, err := drone.KeepAliveOnce(ctx, lease.ID); return err }},
		{"LeaseTimeToLive", func() error { _, err := drone.TimeToLive(ctx, lease.ID); return err }},
		{"LeaseLeases", func() error { _, err := drone.Leases(ctx); return err }},
		{"Status", func() error { _, err := drone.Status(ctx, s.ClientURL()); return err }},
		{"Alarm", func() error { _, err := drone.AlarmList(ctx); return err }},
		{"Defragment", func() error { _, err := drone.Defragment(ctx, s.ClientURL()); return err }},
		{"Hash", func() error { _, err := drone.HashKV(ctx, s.ClientURL(), 0); return err }},
		{"Snapshot", func() error {
			rc, err := drone.Snapshot(ctx)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		}},
		{"MoveLeader", func() error { _, err := drone.MoveLeader(ctx, 1); return err }},
		{"MemberList", func() error { _, err := drone.MemberList(ctx); return err }},
		{"MemberAdd", func() error { _, err := drone.MemberAdd(ctx, []string{"https://127.0.0.1:1"}); return err }},
		{"AuthStatus", func() error { _, err := drone.AuthStatus(ctx); return err }},
		{"UserAdd", func() error { _, err := drone.UserAdd(ctx, "u", "p"); return err }},
		{"Lock", func() error { _, err := lockc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("x")}); return err }},
		{"Health", func() error { _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); return err }},
	}
	for _, tt := range refused {
		err := tt.op()
		// A refused stream can end before the client's first Send does:
		// clientv3 then answers the Send's io.EOF, not the status. Asking
		// again gets the status.
		for i := 0; i < 5 && errors.Is(err, io.EOF); i++ {
			err = tt.op()
		}
		if err == nil || !strings.Contains(err.Error(), "drone:cln-1 may only read") {
			t.Errorf("drone's %s: %v; want it refused naming the caller", tt.call, err)
			continue
		}
		if st, ok := status.FromError(rpctypes.Error(err)); ok && st.Code() != codes.PermissionDenied {
			t.Errorf("drone's %s: code %v, want PermissionDenied", tt.call, st.Code())
		}
	}
	// Nothing the drone tried took effect.
	if ls, err := owner.Leases(ctx); err != nil || len(ls.Leases) != 1 {
		t.Fatalf("leases after the drone's attempts: %v, %v; want only the owner's", ls, err)
	}
	if got, err := owner.Get(ctx, "/clusters/cl-1/env/port"); err != nil || string(got.Kvs[0].Value) != "7001" {
		t.Fatalf("value after the drone's attempts: %v, %v", got, err)
	}
}

func TestFullAccessCNsNeedsClientCertificates(t *testing.T) {
	_, err := Start(context.Background(), Config{DataDir: t.TempDir(), FullAccessCNs: []string{"frontgate:fg-1"}})
	if err == nil || !strings.Contains(err.Error(), "FullAccessCNs needs client TLS with client certificates") {
		t.Fatalf("Start = %v", err)
	}
}

// TestConcurrentReads: with a limit of one, a second drone's Range waits
// while the first runs (and gives up with its own deadline); the owner's
// reads and a drone's other calls do not wait.
func TestConcurrentReads(t *testing.T) {
	g := newAccessGuard([]string{"frontgate:fg-1"}, 1)
	as := func(cn string) context.Context {
		chain := []*x509.Certificate{{Subject: pkix.Name{CommonName: cn}}}
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{chain}}}})
	}
	rangeInfo := &grpc.UnaryServerInfo{FullMethod: rangeMethod}
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := g.unary(as("drone:n-1"), nil, rangeInfo, func(context.Context, any) (any, error) {
			close(entered)
			<-release
			return nil, nil
		})
		first <- err
	}()
	<-entered

	ran := false
	ctx, cancel := context.WithTimeout(as("drone:n-2"), 100*time.Millisecond)
	defer cancel()
	_, err := g.unary(ctx, nil, rangeInfo, func(context.Context, any) (any, error) { ran = true; return nil, nil })
	if status.Code(err) != codes.DeadlineExceeded || ran {
		t.Errorf("a second drone's read while one runs: ran=%v, %v; want it to wait and give up with DeadlineExceeded", ran, err)
	}
	if _, err := g.unary(as("frontgate:fg-1"), nil, rangeInfo, func(context.Context, any) (any, error) { return nil, nil }); err != nil {
		t.Errorf("the owner's read while a drone's runs: %v; want it served at once", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := g.unary(as("drone:n-2"), nil, rangeInfo, func(context.Context, any) (any, error) { return nil, nil }); err != nil {
		t.Errorf("a read after the first ended: %v", err)
	}
}
