package local

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/conformance"
	"github.com/hangarhq/hangar/providers/sdk"
)

// These tests go through the real plugin binary and go-plugin, as pilot does.

func buildPlugin(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hangar-provider-local")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", out, "github.com/hangarhq/hangar/cmd/hangar-provider-local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build plugin: %v\n%s", err, b)
	}
	return out
}

func startPlugin(t *testing.T, bin string) *sdk.Client { return conformance.StartPlugin(t, bin) }

// pluginRuntime uses the default host-wide ranges_dir, as pilot would.
func pluginRuntime(t *testing.T) *providerv1.Runtime {
	t.Helper()
	root := openDir(t)
	killLeftovers(t, root)
	return &providerv1.Runtime{
		Id:     "rt-plugin",
		Config: map[string]string{keyRootDir: root, keyBinDir: writeBinDir(t, fakeDrone, fakeFrontgate)},
	}
}

func TestConformanceThroughPlugin(t *testing.T) {
	bin := buildPlugin(t)
	rt := pluginRuntime(t)
	conformance.Run(t, func(t *testing.T) providerv1.ProviderClient { return startPlugin(t, bin) }, rt, "hangar/drone-test")
	if pids := scanProcs(EnvRoot + "=" + rt.Config[keyRootDir] + "/"); len(pids) != 0 {
		t.Errorf("processes %v left under root_dir after the suite", pids)
	}
}

func TestInstancesOutliveAndSurviveAPluginRestart(t *testing.T) {
	bin := buildPlugin(t)
	rt := pluginRuntime(t)
	root := rt.Config[keyRootDir]
	ctx := t.Context()

	first := startPlugin(t, bin)
	n, err := first.CreateNetwork(ctx, &providerv1.CreateNetworkRequest{Runtime: rt, IdempotencyToken: "net", Name: "net"})
	if err != nil {
		t.Fatalf("CreateNetwork: %v", err)
	}
	in, err := first.RunInstance(ctx, runReq(rt, n.GetId(), "node-1", "hangar/drone-test"))
	if err != nil {
		t.Fatalf("RunInstance: %v", err)
	}
	waitFor(t, 10*time.Second, "the drone and its daemon", func() bool { return len(instanceProcs(in.GetId())) == 2 })
	l, err := net.Listen("tcp", net.JoinHostPort(in.GetAddress(), "0"))
	if err != nil {
		t.Fatalf("instance address %s not bindable: %v", in.GetAddress(), err)
	}
	_ = l.Close()

	// Pilot restarts: the plugin goes, the instance stays.
	first.Close()
	if !first.Exited() {
		t.Fatal("first plugin still running after Close")
	}
	if pids := instanceProcs(in.GetId()); len(pids) != 2 {
		t.Fatalf("instance processes after the plugin exited: %v, want 2", pids)
	}

	second := startPlugin(t, bin)
	list, err := second.ListInstances(ctx, &providerv1.ListInstancesRequest{Runtime: rt, NetworkId: n.GetId()})
	if err != nil {
		t.Fatalf("ListInstances on the restarted plugin: %v", err)
	}
	if len(list.GetInstances()) != 1 || list.GetInstances()[0].GetId() != in.GetId() ||
		list.GetInstances()[0].GetState() != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("restarted plugin lists %v, want %s RUNNING", list.GetInstances(), in.GetId())
	}
	again, err := second.RunInstance(ctx, runReq(rt, n.GetId(), "node-1", "hangar/drone-test"))
	if err != nil || again.GetId() != in.GetId() {
		t.Fatalf("RunInstance retried on the restarted plugin: %v, %v; want %s", again, err, in.GetId())
	}
	if pids := instanceProcs(in.GetId()); len(pids) != 2 {
		t.Errorf("retry on the restarted plugin changed the processes: %v", pids)
	}

	if _, err := second.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: rt, InstanceId: in.GetId()}); err != nil {
		t.Fatalf("DeleteInstance on the restarted plugin: %v", err)
	}
	if pids := instanceProcs(in.GetId()); len(pids) != 0 {
		t.Errorf("processes %v survive DeleteInstance", pids)
	}
	if _, err := os.Stat(filepath.Join(root, "instances", in.GetId())); !os.IsNotExist(err) {
		t.Errorf("instance directory still there: %v", err)
	}
	if _, err := second.DeleteNetwork(ctx, &providerv1.DeleteNetworkRequest{Runtime: rt, NetworkId: n.GetId()}); err != nil {
		t.Fatalf("DeleteNetwork: %v", err)
	}
}
