package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/userdata"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func noEnv(string) string { return "" }

func execute(ctx context.Context, getenv func(string) string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := newCommand(ctx, &out, getenv)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeUserdata(t *testing.T, pilot string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "userdata.json")
	if err := os.WriteFile(p, userdata.Encode(userdata.Frontgate{FrontgateID: "fg-1", PilotAddress: pilot}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHelpExplainsFrontgate(t *testing.T) {
	out, err := execute(context.Background(), noEnv, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"network (VPC)", "9611", "2379", "2380", "--userdata", "--metrics-listen"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestBadInvocations(t *testing.T) {
	ud := writeUserdata(t, "127.0.0.1:1")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no flags", nil, `"data-dir", "userdata" not set`},
		{"bad log format", []string{"--userdata", ud, "--data-dir", t.TempDir(), "--log-format", "xml"}, `--log-format "xml"`},
		{"bad address", []string{"--userdata", ud, "--data-dir", t.TempDir(), "--address", "localhost"}, `--address "localhost"`},
		{"missing user data", []string{"--userdata", "/nonexistent/ud.json", "--data-dir", t.TempDir()}, "--userdata /nonexistent/ud.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := execute(context.Background(), noEnv, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %s", err, tt.want)
			}
		})
	}
}

// helloPilot accepts frontgate streams and reports each Hello.
type helloPilot struct {
	streamv1.UnimplementedFrontgateLinkServer
	hellos chan *streamv1.Hello
}

func (p *helloPilot) Connect(s streamv1.FrontgateLink_ConnectServer) error {
	h, err := streamrpc.RecvHello(s, 5*time.Second)
	if err != nil {
		return err
	}
	p.hellos <- h
	<-s.Context().Done()
	return nil
}

func TestRunsUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pilot := &helloPilot{hellos: make(chan *streamv1.Hello, 10)}
	srv := grpc.NewServer()
	streamv1.RegisterFrontgateLinkServer(srv, pilot)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	defer func() { srv.Stop(); <-served }()

	// A loopback address of its own, as the local provider gives each
	// instance, so the fixed ports do not collide with anything else.
	addr := fmt.Sprintf("127.88.%d.%d", os.Getpid()%250+1, time.Now().UnixNano()%250+1)
	getenv := func(k string) string {
		if k == "HANGAR_ADDRESS" {
			return addr
		}
		return ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	dataDir := t.TempDir()
	go func() {
		_, err := execute(ctx, getenv, "--userdata", writeUserdata(t, ln.Addr().String()), "--data-dir", dataDir, "--log-format", "json")
		errc <- err
	}()

	select {
	case h := <-pilot.hellos:
		if h.Id != "fg-1" || h.Component != "frontgate" {
			t.Fatalf("hello = %v", h)
		}
	case err := <-errc:
		t.Fatalf("frontgate exited early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the frontgate did not connect to pilot")
	}
	// Every port is served at the address from $HANGAR_ADDRESS.
	for _, port := range []int{userdata.FrontgateDronePort, userdata.FrontgateEtcdPort, userdata.FrontgatePeerPort} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, fmt.Sprint(port)), 5*time.Second)
		if err != nil {
			t.Errorf("port %d: %v", port, err)
			continue
		}
		c.Close()
	}
	if _, err := os.Stat(filepath.Join(dataDir, "etcd")); err != nil {
		t.Errorf("etcd data not under the data dir: %v", err)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("graceful stop returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the frontgate did not stop")
	}
}
