package sim

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/providers/conformance"
	"github.com/hangarhq/hangar/providers/sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pluginBinary builds the plugin (go's build cache makes the second
// build of a run cheap).
func pluginBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hangar-provider-sim")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/hangarhq/hangar/cmd/hangar-provider-sim").CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	return bin
}

func startPlugin(t *testing.T, bin string) *sdk.Client { return conformance.StartPlugin(t, bin) }

// startCloud runs `hangar-provider-sim cloud` and returns its socket; the
// cloud is stopped (SIGTERM) when the test ends.
func startCloud(t *testing.T, bin string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cloud.sock")
	cmd := exec.Command(bin, "cloud", "--socket", sock, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sim cloud did not serve %s within 30s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the cloud's socket: %v, %v; want mode 0600", fi.Mode().Perm(), err)
	}
	return sock
}

// TestConformance runs the suite through the plugin binary, as pilot
// starts it: once with the instances in the plugin, once in a sim cloud
// the plugin forwards to.
func TestConformance(t *testing.T) {
	bin := pluginBinary(t)
	rt := &providerv1.Runtime{Id: "sim-test", Zone: "sim-1", Config: map[string]string{"root_dir": t.TempDir()}}
	conformance.Run(t, func(t *testing.T) providerv1.ProviderClient { return startPlugin(t, bin) }, rt, "any-image")
}

func TestConformanceThroughCloud(t *testing.T) {
	bin := pluginBinary(t)
	rt := &providerv1.Runtime{Id: "sim-cloud-test", Zone: "sim-1", Config: map[string]string{"root_dir": t.TempDir(), "cloud_socket": startCloud(t, bin)}}
	conformance.Run(t, func(t *testing.T) providerv1.ProviderClient { return startPlugin(t, bin) }, rt, "any-image")
}

// TestCloudOutlivesPlugin: an instance made through one plugin process is
// still there, running, for the next one (pilot's restart restarts its
// plugins); an unreachable cloud is Unavailable naming its socket.
func TestCloudOutlivesPlugin(t *testing.T) {
	bin := pluginBinary(t)
	sock := startCloud(t, bin)
	ctx := context.Background()
	rt := &providerv1.Runtime{Id: "r", Zone: "sim-1", Config: map[string]string{"root_dir": t.TempDir(), "cloud_socket": sock}}
	first := startPlugin(t, bin)
	n, err := first.CreateNetwork(ctx, &providerv1.CreateNetworkRequest{Runtime: rt, IdempotencyToken: "n"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := first.RunInstance(ctx, &providerv1.RunInstanceRequest{Runtime: rt, IdempotencyToken: "i", NetworkId: n.GetId(), UserData: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()

	second := startPlugin(t, bin)
	got, err := second.GetInstance(ctx, &providerv1.GetInstanceRequest{Runtime: rt, InstanceId: in.GetId()})
	if err != nil || got.GetState() != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("the instance after the plugin's restart: %v, %v; want it RUNNING", got, err)
	}
	// The plugin's own cloud does not know it.
	local := &providerv1.Runtime{Id: "r", Zone: "sim-1", Config: map[string]string{"root_dir": rt.Config["root_dir"]}}
	if _, err := second.GetInstance(ctx, &providerv1.GetInstanceRequest{Runtime: local, InstanceId: in.GetId()}); status.Code(err) != codes.NotFound {
		t.Errorf("the instance in the plugin's own memory: %v; want NotFound", err)
	}
	if _, err := second.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := second.DeleteNetwork(ctx, &providerv1.DeleteNetworkRequest{Runtime: rt, NetworkId: n.GetId()}); err != nil {
		t.Fatal(err)
	}

	gone := filepath.Join(t.TempDir(), "none.sock")
	rt.Config["cloud_socket"] = gone
	_, err = second.GetInstance(ctx, &providerv1.GetInstanceRequest{Runtime: rt, InstanceId: in.GetId()})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), gone) {
		t.Errorf("a runtime whose cloud is not running: %v; want Unavailable naming %s", err, gone)
	}
}

// TestListenCloud: a second cloud on a live socket is refused; a stale
// one is replaced.
func TestListenCloud(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	lis, err := ListenCloud(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListenCloud(sock); err == nil || !strings.Contains(err.Error(), "already serves") {
		t.Errorf("a second cloud on a live socket: %v; want a refusal", err)
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	lis.Close()
	again, err := ListenCloud(sock)
	if err != nil {
		t.Fatalf("a stale socket: %v; want it replaced", err)
	}
	again.Close()
	if _, err := ListenCloud("rel.sock"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("a relative socket path: %v", err)
	}
}

// TestRuntimeConfig: every bad setting is refused naming its key and what
// it takes.
func TestRuntimeConfig(t *testing.T) {
	for _, tc := range []struct {
		config map[string]string
		creds  map[string]string
		want   string // "" is accepted
	}{
		{config: map[string]string{"root_dir": "/tmp/x", "exec_latency": "20ms", "exec": "real", "run_failure_rate": "0.5"}},
		{config: map[string]string{}, want: "root_dir is required"},
		{config: map[string]string{"root_dir": "rel/dir"}, want: `root_dir = "rel/dir": want an absolute directory`},
		{config: map[string]string{"root_dir": "/x", "exec": "maybe"}, want: `exec = "maybe"`},
		{config: map[string]string{"root_dir": "/x", "exec_latency": "-1s"}, want: "exec_latency"},
		{config: map[string]string{"root_dir": "/x", "exec_exit_code": "0"}, want: "exec_exit_code = \"0\": want the exit code of a failing fake command, 1-255"},
		{config: map[string]string{"root_dir": "/x", "exec_output_bytes": "1000000"}, want: "exec_output_bytes"},
		{config: map[string]string{"root_dir": "/x", "run_failure_rate": "2"}, want: "run_failure_rate = \"2\": want the share"},
		{config: map[string]string{"root_dir": "/x", "flavour": "big"}, want: `"flavour": unknown key; the sim provider takes cloud_socket, exec, exec_exit_code`},
		{config: map[string]string{"root_dir": "/x"}, creds: map[string]string{"k": "v"}, want: "takes no credentials"},
		{config: map[string]string{"root_dir": "/x", "cloud_socket": "/run/sim.sock"}},
		{config: map[string]string{"root_dir": "/x", "cloud_socket": "sim.sock"}, want: `cloud_socket = "sim.sock": want the absolute path of the unix socket`},
	} {
		_, err := parseRuntime(&providerv1.Runtime{Id: "r", Config: tc.config, Credentials: tc.creds})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.config, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one saying %q", tc.config, err, tc.want)
		}
	}
}

// TestRunInstanceInjection: run_failure_rate 1 fails every call and makes
// nothing; run_latency delays the call.
func TestRunInstanceInjection(t *testing.T) {
	p := New(Config{})
	defer p.Close()
	ctx := context.Background()
	rt := &providerv1.Runtime{Id: "r", Config: map[string]string{"root_dir": t.TempDir(), "run_failure_rate": "1"}}
	n, err := p.CreateNetwork(ctx, &providerv1.CreateNetworkRequest{Runtime: rt, IdempotencyToken: "n"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.RunInstance(ctx, &providerv1.RunInstanceRequest{Runtime: rt, IdempotencyToken: "i", NetworkId: n.GetId()})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "run_failure_rate") {
		t.Fatalf("RunInstance with run_failure_rate 1: %v; want Unavailable naming the setting", err)
	}
	if l, _ := p.ListInstances(ctx, &providerv1.ListInstancesRequest{Runtime: rt}); len(l.GetInstances()) != 0 {
		t.Fatalf("a failed RunInstance left %v", l.GetInstances())
	}
	rt.Config["run_failure_rate"], rt.Config["run_latency"] = "0", "200ms"
	start := time.Now()
	in, err := p.RunInstance(ctx, &providerv1.RunInstanceRequest{Runtime: rt, IdempotencyToken: "i", NetworkId: n.GetId(), UserData: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("RunInstance with run_latency 200ms took %v", d)
	}
	if pfx, err := netip.ParsePrefix(n.GetCidr()); err != nil || !pfx.Contains(netip.MustParseAddr(in.GetAddress())) || in.GetAddress() == pfx.Addr().Next().String() {
		t.Errorf("address %q, want one of network %q other than its frontgate's .1 (%v)", in.GetAddress(), n.GetCidr(), err)
	}
	if _, err := p.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
}

// TestFakeExec: a command id runs once; latency, failures, output size
// and the timeout are played; Cancel ends a running command and fences an
// unseen id.
func TestFakeExec(t *testing.T) {
	ctx := context.Background()
	always := func() bool { return true }
	never := func() bool { return false }

	e := newFakeExec(ctx, "cln-1", execConfig{latency: 50 * time.Millisecond, exitCode: 7, outputBytes: 100}, always)
	defer e.Close()
	start := time.Now()
	r, err := e.Run(ctx, &streamv1.RunCommand{CommandId: "c1", Cmd: "true"})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState() != streamv1.CommandState_COMMAND_STATE_EXITED || r.GetExitCode() != 7 || len(r.GetOutput()) != 100 || r.GetNodeId() != "cln-1" {
		t.Errorf("failing command: %v; want EXITED 7 with 100 bytes of output from cln-1", r)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Errorf("a 50ms command answered in %v", time.Since(start))
	}
	again, _ := e.Run(ctx, &streamv1.RunCommand{CommandId: "c1", Cmd: "true"})
	if again != r {
		t.Errorf("the same command id ran again: %v, first %v", again, r)
	}

	slow := newFakeExec(ctx, "cln-2", execConfig{latency: time.Hour}, never)
	defer slow.Close()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if r, _ := slow.Run(short, &streamv1.RunCommand{CommandId: "long"}); r.GetState() != streamv1.CommandState_COMMAND_STATE_RUNNING {
		t.Errorf("a caller that stopped waiting got %v; want RUNNING", r)
	}
	if r, _ := slow.Cancel(ctx, "long", "job cancelled"); r.GetState() != streamv1.CommandState_COMMAND_STATE_CANCELLED {
		t.Errorf("Cancel of a running command: %v; want CANCELLED", r)
	}
	if r, _ := slow.Cancel(ctx, "unseen", "job cancelled"); r.GetState() != streamv1.CommandState_COMMAND_STATE_CANCELLED {
		t.Errorf("Cancel of an unseen command: %v; want CANCELLED", r)
	}
	if r, _ := slow.Run(ctx, &streamv1.RunCommand{CommandId: "unseen"}); r.GetState() != streamv1.CommandState_COMMAND_STATE_CANCELLED {
		t.Errorf("a command cancelled before it ran then ran: %v", r)
	}
	if r, _ := slow.Run(ctx, &streamv1.RunCommand{CommandId: "t", TimeoutSeconds: 1}); r.GetState() != streamv1.CommandState_COMMAND_STATE_TIMED_OUT {
		t.Errorf("a command longer than its timeout: %v; want TIMED_OUT", r)
	}

	// The provider's end ends the commands still running (goleak in
	// TestMain sees any left).
	life, end := context.WithCancel(ctx)
	owned := newFakeExec(life, "cln-3", execConfig{latency: time.Hour}, never)
	brief, cancelBrief := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelBrief()
	owned.Run(brief, &streamv1.RunCommand{CommandId: "forever"})
	end()
	owned.Close()
	if r, _ := owned.Run(ctx, &streamv1.RunCommand{CommandId: "forever"}); r.GetState() != streamv1.CommandState_COMMAND_STATE_CANCELLED {
		t.Errorf("a command running when the provider closed: %v; want CANCELLED", r)
	}
}

// TestRaiseFileLimit: the limit reported is the one in force, at least
// what the process had, and the instances it allows follow from it.
func TestRaiseFileLimit(t *testing.T) {
	var before syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		t.Fatal(err)
	}
	limit, n := RaiseFileLimit()
	var after syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
		t.Fatal(err)
	}
	if limit != after.Cur || limit < before.Cur || n != int(limit/fdsPerInstance) {
		t.Errorf("RaiseFileLimit() = %d, %d; in force %d (was %d)", limit, n, after.Cur, before.Cur)
	}
}

// TestServeCloudReturnsWhenServeFails: a listener that fails ends
// ServeCloud with its error, without waiting for ctx (goleak in TestMain
// sees a stopper left behind).
func TestServeCloudReturnsWhenServeFails(t *testing.T) {
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "c.sock"))
	if err != nil {
		t.Fatal(err)
	}
	lis.Close()
	p := New(Config{})
	defer p.Close()
	done := make(chan error, 1)
	go func() { done <- ServeCloud(context.Background(), lis, p) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("ServeCloud on a closed listener returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeCloud did not return after its listener failed")
	}
}

// TestFrontgateProcess: with frontgate_binary a network's frontgate is a
// process of that binary, given its user data and the instance's address,
// stopped with its instance and started again with it.
func TestFrontgateProcess(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "frontgate")
	// It records its arguments and its user data, then waits to be stopped.
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\ncat \"$2\" > \"$0.userdata\"\necho $$ > \"$0.pid\"\nexec sleep 600\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := New(Config{})
	t.Cleanup(func() { cancel(); p.Close() })
	rt := &providerv1.Runtime{Id: "r", Zone: "sim-1", Config: map[string]string{"root_dir": filepath.Join(dir, "root"), "frontgate_binary": bin}}
	n, err := p.CreateNetwork(ctx, &providerv1.CreateNetworkRequest{Runtime: rt, IdempotencyToken: "n"})
	if err != nil {
		t.Fatal(err)
	}
	ud := `{"frontgate_id":"fg-1","pilot_address":"127.0.0.1:9","ca_pem":"PEM"}`
	in, err := p.RunInstance(ctx, &providerv1.RunInstanceRequest{Runtime: rt, IdempotencyToken: "fg", NetworkId: n.GetId(), Image: "frontgate", UserData: []byte(ud)})
	if err != nil {
		t.Fatal(err)
	}
	running := func() bool { return alive(bin + ".pid") }
	waitUntil(t, "the frontgate process to start", running)
	var args []byte
	waitUntil(t, "its arguments", func() bool { args, _ = os.ReadFile(bin + ".args"); return len(args) > 0 })
	if got := string(args); !strings.Contains(got, "--address\n"+in.GetAddress()+"\n") || !strings.Contains(got, "--data-dir\n") {
		t.Errorf("frontgate arguments:\n%s\nwant --address %s and --data-dir", got, in.GetAddress())
	}
	if got, _ := os.ReadFile(bin + ".userdata"); string(got) != ud {
		t.Errorf("frontgate user data %q, want %q", got, ud)
	}

	if _, err := p.StopInstance(ctx, &providerv1.StopInstanceRequest{Runtime: rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stopped instance's process to end", func() bool { return !running() })
	os.Remove(bin + ".pid")
	if _, err := p.StartInstance(ctx, &providerv1.StartInstanceRequest{Runtime: rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the started instance's process", running)
	if _, err := p.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the deleted instance's process to end", func() bool { return !running() })
}

// alive reads the pid the script wrote and says whether it still runs
// (as the sleep the script became).
func alive(pidFile string) bool {
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "cmdline"))
	return err == nil && strings.HasPrefix(string(cmdline), "sleep\x00")
}

// waitUntil polls cond every 20 ms for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
