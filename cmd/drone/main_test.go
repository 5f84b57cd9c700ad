package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/userdata"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	t.Setenv("HANGAR_ROOT", "/srv/inst-1/root")
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		check   func(*options) string
	}{
		{name: "userdata required", args: []string{"--data-dir", "/d"}, wantErr: "--userdata is required"},
		{name: "data dir required", args: []string{"--userdata", "/u"}, wantErr: "--data-dir is required"},
		{name: "bad log format", args: []string{"--userdata", "/u", "--data-dir", "/d", "--log-format", "xml"}, wantErr: `--log-format "xml": allowed values are text and json`},
		{name: "bad log level", args: []string{"--userdata", "/u", "--data-dir", "/d", "--log-level", "loud"}, wantErr: `--log-level "loud"`},
		{name: "stray argument", args: []string{"--userdata", "/u", "--data-dir", "/d", "start"}, wantErr: `unexpected argument "start"`},
		{
			name: "root from the environment, baked templates under it",
			args: []string{"--userdata", "/u", "--data-dir", "/d"},
			check: func(o *options) string {
				if o.root != "/srv/inst-1/root" || o.confdDir != "/srv/inst-1/root/etc/confd" {
					return fmt.Sprintf("root %q confd %q", o.root, o.confdDir)
				}
				return ""
			},
		},
		{
			name: "explicit flags win",
			args: []string{"--userdata", "/u", "--data-dir", "/d", "--root", "/r", "--confd-dir", "/baked"},
			check: func(o *options) string {
				if o.root != "/r" || o.confdDir != "/baked" {
					return fmt.Sprintf("root %q confd %q", o.root, o.confdDir)
				}
				return ""
			},
		},
		{
			name: "relative paths are made absolute before the chdir",
			args: []string{"--userdata", "u.json", "--data-dir", "data"},
			check: func(o *options) string {
				if !filepath.IsAbs(o.userdata) || !filepath.IsAbs(o.dataDir) {
					return fmt.Sprintf("userdata %q data %q", o.userdata, o.dataDir)
				}
				return ""
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parse(tc.args, &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(o); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

func TestHelpAndUsageErrors(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out); code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	for _, want := range []string{"agent in every app instance", "user data", "--userdata", "-data-dir"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"--data-dir", "/d"}, &out); code != 2 || !strings.Contains(out.String(), "--userdata is required") {
		t.Fatalf("missing flag: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"--userdata", filepath.Join(t.TempDir(), "none.json"), "--data-dir", t.TempDir()}, &out); code != 1 || !strings.Contains(out.String(), "read user data") {
		t.Fatalf("missing user data file: exit %d, output %q", code, out.String())
	}
}

// frontgate is a minimal DroneLink server handing each drone stream to the
// test.
type frontgate struct {
	streamv1.UnimplementedDroneLinkServer
	peers chan *streamrpc.Peer
}

func (f *frontgate) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	if _, err := streamrpc.RecvHello(st, 5*time.Second); err != nil {
		return err
	}
	p := streamrpc.NewPeer(st, nil, streamrpc.Options{})
	select {
	case f.peers <- p:
	case <-st.Context().Done():
		return nil
	}
	_ = p.Run(st.Context())
	return nil
}

// syncBuffer is a log sink the drone writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDroneEndToEnd runs the whole drone against a real etcd and a fake
// frontgate: it renders delivered templates from the metadata and runs a
// command, then stops cleanly on cancellation.
func TestDroneEndToEnd(t *testing.T) {
	t.Setenv("HANGAR_ROOT", "") // no chdir in the test process
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	srv, err := etcdserver.Start(ctx, etcdserver.Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/clusters/cl-1/hosts/kv/i-1/node_id", "cln-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/clusters/cl-1/hosts/kv/i-1/ip", "127.1.0.5"); err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg := &frontgate{peers: make(chan *streamrpc.Peer, 1)}
	gs := grpc.NewServer()
	streamv1.RegisterDroneLinkServer(gs, fg)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	defer func() { gs.Stop(); <-served }()

	dir := t.TempDir()
	udPath := filepath.Join(dir, "userdata.json")
	ud := userdata.Drone{ClusterID: "cl-1", NodeID: "cln-1", FrontgateAddress: lis.Addr().String(), EtcdEndpoints: []string{srv.ClientURL()}}
	if err := os.WriteFile(udPath, userdata.Encode(ud), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	droneCtx, stopDrone := context.WithCancel(ctx)
	exited := make(chan int, 1)
	go func() {
		exited <- run(droneCtx, []string{"--userdata", udPath, "--data-dir", filepath.Join(dir, "data"), "--confd-dir", filepath.Join(dir, "no-baked"), "--log-format", "json"}, &logs)
	}()

	var peer *streamrpc.Peer
	select {
	case peer = <-fg.peers:
	case <-time.After(20 * time.Second):
		stopDrone()
		t.Fatalf("the drone never connected; logs:\n%s", logs.String())
	}

	dest := filepath.Join(dir, "out", "app.conf")
	resp, err := peer.Call(ctx, &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: &streamv1.ConfigureRenderer{
		NodeId: "cln-1", ClusterId: "cl-1",
		Files: map[string][]byte{
			"conf.d/app.toml":    fmt.Appendf(nil, "[template]\nsrc = \"app.tmpl\"\ndest = %q\nkeys = [\"/host\"]\n", dest),
			"templates/app.tmpl": []byte(`bind {{getv "/host/ip"}}`),
		},
	}}})
	if err != nil || resp.GetAck() == nil {
		t.Fatalf("configure renderer: %v %v", resp, err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "bind 127.1.0.5" {
		t.Fatalf("rendered %q", b)
	}

	resp, err = peer.Call(ctx, &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: &streamv1.RunCommand{CommandId: "c-1", Cmd: "cat " + dest}}})
	if err != nil {
		t.Fatal(err)
	}
	if res := resp.GetCommandResult(); res.GetExitCode() != 0 || string(res.GetOutput()) != "bind 127.1.0.5" {
		t.Fatalf("command result: %v", res)
	}

	stopDrone()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit code %d; logs:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the drone did not stop")
	}
	if !strings.Contains(logs.String(), `"node_id":"cln-1"`) {
		t.Fatalf("logs lack the node id:\n%s", logs.String())
	}
}
