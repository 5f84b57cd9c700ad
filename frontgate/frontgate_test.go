package frontgate

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/frontgate/internal/fakepilot"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startFrontgate(t *testing.T, pilotAddr string) *Frontgate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fg, err := Start(ctx, Config{
		FrontgateID:     "fg-1",
		PilotAddress:    pilotAddr,
		DataDir:         t.TempDir(),
		EtcdClientURL:   "http://127.0.0.1:0",
		EtcdPeerURL:     "http://127.0.0.1:0",
		DroneListen:     "127.0.0.1:0",
		MetricsListen:   "127.0.0.1:0",
		WALSegmentBytes: 1 << 20,
		Version:         "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fg.Stop)
	return fg
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func etcdTree(t *testing.T, fg *Frontgate, prefix string) map[string]string {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{fg.EtcdClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(callCtx(t), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range resp.Kvs {
		m[string(kv.Key)] = string(kv.Value)
	}
	return m
}

// connectDrone connects a drone that answers every command with exit 0.
func connectDrone(t *testing.T, addr, node, cluster string) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := streamv1.NewDroneLinkClient(cc).Connect(ctx)
	if err == nil {
		err = streamrpc.SendHello(stream, &streamv1.Hello{Component: "drone", Id: node, ClusterId: cluster})
	}
	if err != nil {
		cancel()
		cc.Close()
		t.Fatal(err)
	}
	peer := streamrpc.NewPeer(stream, func(_ context.Context, req *streamv1.Request) *streamv1.Response {
		rc := req.GetRunCommand()
		return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: &streamv1.CommandResult{
			CommandId: rc.GetCommandId(), NodeId: node, State: streamv1.CommandState_COMMAND_STATE_EXITED, Output: []byte(rc.GetCmd()),
		}}}
	}, streamrpc.Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = peer.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cc.Close()
	})
}

func TestFrontgateServesPilot(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0")
	fg := startFrontgate(t, pilot.Addr())
	hello := pilot.WaitConnected(t, 15*time.Second)
	if hello.Id != "fg-1" || hello.Component != "frontgate" || !slices.Contains(hello.Capabilities, "apply_metadata") {
		t.Fatalf("hello = %v", hello)
	}

	// Metadata lands in etcd under the cluster's prefix.
	kvs := map[string]string{"hosts/master/i-1/ip": "10.0.0.1", "env/port": "6379"}
	resp, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: "cl-1", Kvs: kvs}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAck() == nil {
		t.Fatalf("apply answered %v", resp)
	}
	got := etcdTree(t, fg, "/clusters/cl-1/")
	if len(got) != 2 || got["/clusters/cl-1/hosts/master/i-1/ip"] != "10.0.0.1" || got["/clusters/cl-1/env/port"] != "6379" {
		t.Fatalf("etcd holds %v", got)
	}

	// A bad request is answered with a code naming the field.
	_, err = pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: "cl-1", Kvs: map[string]string{"../x": "1"}}}})
	if !streamrpc.IsCode(err, streamrpc.CodeInvalid) || !strings.Contains(err.Error(), `"../x"`) {
		t.Fatalf("apply with a bad key = %v, want invalid naming the key", err)
	}

	// Drones that connect are listed and reachable.
	connectDrone(t, fg.DroneAddr(), "cln-a", "cl-1")
	connectDrone(t, fg.DroneAddr(), "cln-b", "cl-2")
	var listed []string
	waitFor(t, "drone cln-a listed", func() bool {
		resp, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: "cl-1"}}})
		if err != nil {
			t.Fatal(err)
		}
		listed = nil
		for _, d := range resp.GetDroneList().GetDrones() {
			listed = append(listed, d.NodeId)
		}
		return len(listed) > 0
	})
	if !slices.Equal(listed, []string{"cln-a"}) {
		t.Fatalf("drones of cl-1 = %v, want [cln-a]", listed)
	}
	resp, err = pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: &streamv1.RunCommand{NodeId: "cln-b", CommandId: "c-1", Cmd: "hostname"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetCommandResult(); r.GetNodeId() != "cln-b" || string(r.GetOutput()) != "hostname" {
		t.Fatalf("run_command answered %v", resp)
	}

	if _, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_DeleteMetadata{DeleteMetadata: &streamv1.DeleteMetadata{ClusterId: "cl-1"}}}); err != nil {
		t.Fatal(err)
	}
	if got := etcdTree(t, fg, "/clusters/cl-1/"); len(got) != 0 {
		t.Fatalf("after delete etcd holds %v", got)
	}

	body := scrape(t, fg.MetricsAddr())
	for _, want := range []string{
		"hangar_frontgate_connected_drones 2",
		"hangar_frontgate_pilot_link_up 1",
		`hangar_frontgate_relayed_requests_total{kind="apply_metadata",result="ok"} 1`,
		`hangar_frontgate_relayed_requests_total{kind="apply_metadata",result="invalid"} 1`,
		`hangar_frontgate_relayed_requests_total{kind="run_command",result="ok"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	return string(b)
}

func TestFrontgateReconnectsToRestartedPilot(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0")
	fg := startFrontgate(t, pilot.Addr())
	pilot.WaitConnected(t, 15*time.Second)

	pilot.Stop()
	waitFor(t, "the frontgate to notice pilot is gone", func() bool { return !fg.PilotConnected() })
	pilot = fakepilot.Start(t, pilot.Addr())
	pilot.WaitConnected(t, 15*time.Second)

	resp, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: "cl-1", Kvs: map[string]string{"env/a": "1"}}}})
	if err != nil || resp.GetAck() == nil {
		t.Fatalf("apply after reconnect = %v, %v", resp, err)
	}
	if got := etcdTree(t, fg, "/clusters/cl-1/"); got["/clusters/cl-1/env/a"] != "1" {
		t.Fatalf("etcd holds %v", got)
	}
}

func TestStartChecksConfig(t *testing.T) {
	_, err := Start(context.Background(), Config{FrontgateID: "fg-1", PilotAddress: "127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "data dir is required") {
		t.Fatalf("Start = %v, want the missing data dir named", err)
	}
}
