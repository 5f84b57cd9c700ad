package local

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
)

func newProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p := New(cfg)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func wantCode(t *testing.T, err error, code codes.Code, mention string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v (%v), want %v", status.Code(err), err, code)
	}
	if mention != "" && !strings.Contains(err.Error(), mention) {
		t.Errorf("error %q does not mention %q", err, mention)
	}
}

func mustNetwork(t *testing.T, p *Provider, rt *providerv1.Runtime, token string) *providerv1.Network {
	t.Helper()
	n, err := p.CreateNetwork(t.Context(), &providerv1.CreateNetworkRequest{Runtime: rt, IdempotencyToken: token, Name: token})
	if err != nil {
		t.Fatalf("CreateNetwork %s: %v", token, err)
	}
	return n
}

func mustRun(t *testing.T, p *Provider, rt *providerv1.Runtime, netID, token, image string) *providerv1.Instance {
	t.Helper()
	in, err := p.RunInstance(t.Context(), runReq(rt, netID, token, image))
	if err != nil {
		t.Fatalf("RunInstance %s: %v", token, err)
	}
	return in
}

func runReq(rt *providerv1.Runtime, netID, token, image string) *providerv1.RunInstanceRequest {
	return &providerv1.RunInstanceRequest{
		Runtime: rt, IdempotencyToken: token, NetworkId: netID, Name: token, Image: image,
		UserData: []byte(`{"node_id":"` + token + `"}`), Labels: map[string]string{"t": token},
	}
}

func mustDelete(t *testing.T, p *Provider, rt *providerv1.Runtime, id string) {
	t.Helper()
	if _, err := p.DeleteInstance(t.Context(), &providerv1.DeleteInstanceRequest{Runtime: rt, InstanceId: id}); err != nil {
		t.Fatalf("DeleteInstance %s: %v", id, err)
	}
}

func getState(t *testing.T, p *Provider, rt *providerv1.Runtime, id string) providerv1.InstanceState {
	t.Helper()
	in, err := p.GetInstance(t.Context(), &providerv1.GetInstanceRequest{Runtime: rt, InstanceId: id})
	if err != nil {
		t.Fatalf("GetInstance %s: %v", id, err)
	}
	return in.GetState()
}

func TestRuntimeValidation(t *testing.T) {
	bin := writeBinDir(t, fakeDrone, fakeFrontgate)
	root := openDir(t)
	p := newProvider(t, Config{})
	cfg := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		rt      *providerv1.Runtime
		mention string
	}{
		{"no runtime", nil, "runtime is required"},
		{"no root_dir", &providerv1.Runtime{Config: cfg(keyBinDir, bin)}, "root_dir is required"},
		{"relative root_dir", &providerv1.Runtime{Config: cfg(keyRootDir, "state", keyBinDir, bin)}, "root_dir must be an absolute path"},
		{"no bin_dir", &providerv1.Runtime{Config: cfg(keyRootDir, root)}, "bin_dir is required"},
		{"unknown key", &providerv1.Runtime{Config: cfg(keyRootDir, root, keyBinDir, bin, "rootdir", "/x")}, "runtime.config.rootdir is not a local provider setting (allowed: root_dir, bin_dir, ranges_dir, images_dir, network_prefix, frontgate_metrics_port, access_key_sha256)"},
		{"network_prefix too small", &providerv1.Runtime{Config: cfg(keyRootDir, root, keyBinDir, bin, keyNetworkPrefix, "16")}, "runtime.config.network_prefix \"16\": give a prefix length from 20 (4063 instances a network) to 24"},
		{"network_prefix not a number", &providerv1.Runtime{Config: cfg(keyRootDir, root, keyBinDir, bin, keyNetworkPrefix, "big")}, "runtime.config.network_prefix"},
		{"frontgate_metrics_port not a port", &providerv1.Runtime{Config: cfg(keyRootDir, root, keyBinDir, bin, keyFrontgateMetrics, "70000")}, "runtime.config.frontgate_metrics_port \"70000\": give a TCP port from 1 to 65535"},
		{"frontgate_metrics_port the etcd port", &providerv1.Runtime{Config: cfg(keyRootDir, root, keyBinDir, bin, keyFrontgateMetrics, "2379")}, "other than the frontgate's own (9611, 2379, 2380)"},
		{"unknown credential", &providerv1.Runtime{Config: cfg(keyRootDir, root, keyBinDir, bin), Credentials: cfg("key", "secret")}, "runtime.credentials.key"},
		{"access key nobody checks", &providerv1.Runtime{Config: cfg(keyRootDir, root, keyBinDir, bin), Credentials: cfg(credAccessKey, "secret")}, "runtime.config.access_key_sha256"},
		{"zone", &providerv1.Runtime{Zone: "us-east-1", Config: cfg(keyRootDir, root, keyBinDir, bin)}, "runtime.zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: tt.rt})
			wantCode(t, err, codes.InvalidArgument, tt.mention)
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks a credential: %v", err)
			}
			_, err = p.CreateNetwork(t.Context(), &providerv1.CreateNetworkRequest{Runtime: tt.rt, IdempotencyToken: "x"})
			wantCode(t, err, codes.InvalidArgument, tt.mention)
		})
	}

	t.Run("access key", func(t *testing.T) {
		sum := sha256.Sum256([]byte("right"))
		locked := cfg(keyRootDir, root, keyBinDir, bin, keyAccessKeyHash, hex.EncodeToString(sum[:]))
		for _, tc := range []struct {
			name  string
			creds map[string]string
			code  codes.Code
		}{
			{"wrong", cfg(credAccessKey, "secret"), codes.PermissionDenied},
			{"missing", nil, codes.PermissionDenied},
			{"right", cfg(credAccessKey, "right"), codes.OK},
		} {
			_, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: &providerv1.Runtime{Config: locked, Credentials: tc.creds}})
			if status.Code(err) != tc.code {
				t.Errorf("%s key: %v, want %v", tc.name, err, tc.code)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the key: %v", err)
			}
		}
	})

	t.Run("missing frontgate binary", func(t *testing.T) {
		half := openDir(t)
		if err := os.WriteFile(filepath.Join(half, droneBinary), []byte(fakeDrone), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: &providerv1.Runtime{Config: cfg(keyRootDir, root, keyBinDir, half)}})
		wantCode(t, err, codes.FailedPrecondition, "bin_dir")
	})
	t.Run("valid", func(t *testing.T) {
		rt := newRuntime(t, bin)
		rt.Zone = Zone
		resp, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: rt})
		if err != nil {
			t.Fatalf("ValidateRuntime: %v", err)
		}
		if len(resp.GetZones()) != 1 || resp.GetZones()[0] != Zone {
			t.Errorf("zones = %v, want [%s]", resp.GetZones(), Zone)
		}
	})
}

func TestInstanceLifecycle(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	root := rt.Config[keyRootDir]
	p := newProvider(t, Config{})

	n := mustNetwork(t, p, rt, "net-token")
	if n.GetCidr() != "127.10.1.0/24" {
		t.Errorf("first network of a fresh host = %s, want 127.10.1.0/24", n.GetCidr())
	}
	if !regexp.MustCompile(`^net-[0-9a-f]{8}$`).MatchString(n.GetId()) {
		t.Errorf("network id %q, want net- and 8 hex digits", n.GetId())
	}

	fg := mustRun(t, p, rt, n.GetId(), "fg", "frontgate")
	dr := mustRun(t, p, rt, n.GetId(), "dr", "hangar/redis:7")
	if !regexp.MustCompile(`^i-[0-9a-f]{8}$`).MatchString(fg.GetId()) {
		t.Errorf("instance id %q, want i- and 8 hex digits", fg.GetId())
	}
	if fg.GetAddress() != "127.10.1.2" || dr.GetAddress() != "127.10.1.3" {
		t.Errorf("addresses %s, %s; want 127.10.1.2, 127.10.1.3", fg.GetAddress(), dr.GetAddress())
	}
	if dr.GetImage() != "hangar/redis:7" || dr.GetLabels()["t"] != "dr" {
		t.Errorf("instance %v lost its image or labels", dr)
	}

	fgDir := filepath.Join(root, "instances", fg.GetId())
	drDir := filepath.Join(root, "instances", dr.GetId())
	waitLog(t, fgDir, "frontgate args: --userdata "+fgDir+"/userdata.json --data-dir "+fgDir+"/data")
	log := waitLog(t, drDir, "path: ")
	for _, want := range []string{
		"args: --userdata " + drDir + "/userdata.json --data-dir " + drDir + "/data",
		"env: id=" + dr.GetId() + " addr=127.10.1.3 root=" + drDir + "/root cookie=none",
		"path: " + rt.Config[keyBinDir] + ":",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("agent.log lacks %q:\n%s", want, log)
		}
	}
	fi, err := os.Stat(filepath.Join(drDir, userDataFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("userdata.json mode %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(filepath.Join(drDir, userDataFile)); string(b) != `{"node_id":"dr"}` {
		t.Errorf("userdata.json = %q", b)
	}
	for _, d := range []string{dataDir, rootDir} {
		if fi, err := os.Stat(filepath.Join(drDir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s/ not created: %v", d, err)
		}
	}

	for _, in := range []*providerv1.Instance{fg, dr} {
		if st := getState(t, p, rt, in.GetId()); st != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
			t.Errorf("%s state %v, want RUNNING", in.GetId(), st)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(in.GetAddress(), "0"))
		if err != nil {
			t.Errorf("address %s not bindable: %v", in.GetAddress(), err)
		} else {
			_ = l.Close()
		}
	}
	// The drone plus the daemon it detached.
	waitFor(t, 10*time.Second, "drone and its daemon", func() bool { return len(instanceProcs(dr.GetId())) == 2 })

	_, err = p.DeleteNetwork(t.Context(), &providerv1.DeleteNetworkRequest{Runtime: rt, NetworkId: n.GetId()})
	wantCode(t, err, codes.FailedPrecondition, fg.GetId())
	wantCode(t, err, codes.FailedPrecondition, dr.GetId())

	mustDelete(t, p, rt, dr.GetId())
	if pids := instanceProcs(dr.GetId()); len(pids) != 0 {
		t.Errorf("processes %v of %s survive DeleteInstance", pids, dr.GetId())
	}
	if _, err := os.Stat(drDir); !os.IsNotExist(err) {
		t.Errorf("instance directory still there: %v", err)
	}
	mustDelete(t, p, rt, dr.GetId()) // idempotent
	_, err = p.GetInstance(t.Context(), &providerv1.GetInstanceRequest{Runtime: rt, InstanceId: dr.GetId()})
	wantCode(t, err, codes.NotFound, dr.GetId())

	// Its token stays spent; a different token gets the freed address.
	_, err = p.RunInstance(t.Context(), runReq(rt, n.GetId(), "dr", "hangar/redis:7"))
	wantCode(t, err, codes.FailedPrecondition, "idempotency_token")
	again := mustRun(t, p, rt, n.GetId(), "dr2", "hangar/redis:7")
	if again.GetAddress() != "127.10.1.3" {
		t.Errorf("freed address not reused: got %s", again.GetAddress())
	}

	list, err := p.ListInstances(t.Context(), &providerv1.ListInstancesRequest{Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(list.GetInstances()); got != 2 || list.GetInstances()[0].GetId() != fg.GetId() {
		t.Errorf("ListInstances = %v, want %s then %s", list.GetInstances(), fg.GetId(), again.GetId())
	}

	for _, id := range []string{fg.GetId(), again.GetId()} {
		mustDelete(t, p, rt, id)
	}
	if _, err := p.DeleteNetwork(t.Context(), &providerv1.DeleteNetworkRequest{Runtime: rt, NetworkId: n.GetId()}); err != nil {
		t.Fatalf("DeleteNetwork: %v", err)
	}
	if pids := scanProcs(EnvRoot + "=" + root + "/"); len(pids) != 0 {
		t.Errorf("processes %v left under root_dir", pids)
	}
}

func TestRunInstanceInputErrors(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	n := mustNetwork(t, p, rt, "n")

	tests := []struct {
		name    string
		mutate  func(*providerv1.RunInstanceRequest)
		code    codes.Code
		mention string
	}{
		{"no token", func(r *providerv1.RunInstanceRequest) { r.IdempotencyToken = "" }, codes.InvalidArgument, "idempotency_token is required"},
		{"no network", func(r *providerv1.RunInstanceRequest) { r.NetworkId = "" }, codes.InvalidArgument, "network_id is required"},
		{"negative cpu", func(r *providerv1.RunInstanceRequest) { r.Cpu = -1 }, codes.InvalidArgument, "cpu must be 0 (the provider's default) or more"},
		{"negative memory", func(r *providerv1.RunInstanceRequest) { r.MemoryMib = -1 }, codes.InvalidArgument, "memory_mib"},
		{"unknown network", func(r *providerv1.RunInstanceRequest) { r.NetworkId = "net-00000000" }, codes.NotFound, "net-00000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := runReq(rt, n.GetId(), "tok-"+tt.name, "drone")
			tt.mutate(req)
			_, err := p.RunInstance(t.Context(), req)
			wantCode(t, err, tt.code, tt.mention)
		})
	}

	t.Run("token reused for another instance", func(t *testing.T) {
		in := mustRun(t, p, rt, n.GetId(), "reuse", "drone")
		defer mustDelete(t, p, rt, in.GetId())
		_, err := p.RunInstance(t.Context(), runReq(rt, n.GetId(), "reuse", "frontgate"))
		wantCode(t, err, codes.InvalidArgument, in.GetId())
	})
	t.Run("no image runs a drone", func(t *testing.T) {
		in := mustRun(t, p, rt, n.GetId(), "no-image", "")
		defer mustDelete(t, p, rt, in.GetId())
		waitLog(t, filepath.Join(rt.Config[keyRootDir], "instances", in.GetId()), "env: id="+in.GetId())
	})
	t.Run("missing binary", func(t *testing.T) {
		half := openDir(t)
		rt2 := newRuntime(t, half)
		n2 := mustNetwork(t, p, rt2, "n2")
		_, err := p.RunInstance(t.Context(), runReq(rt2, n2.GetId(), "x", "drone"))
		wantCode(t, err, codes.FailedPrecondition, "bin_dir")
	})

	list, err := p.ListInstances(t.Context(), &providerv1.ListInstancesRequest{Runtime: rt, NetworkId: n.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetInstances()) != 0 {
		t.Errorf("rejected or deleted calls left instances: %v", list.GetInstances())
	}
	_, err = p.ListInstances(t.Context(), &providerv1.ListInstancesRequest{Runtime: rt, NetworkId: "net-00000000"})
	wantCode(t, err, codes.NotFound, "net-00000000")
}

// DeleteInstance outlasts a process that ignores SIGTERM, and refuses to
// start the instance again meanwhile.
func TestDeleteKillsProcessesIgnoringSIGTERM(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, stubbornDrone, fakeFrontgate))
	const grace = time.Second
	p := newProvider(t, Config{KillGrace: grace})
	n := mustNetwork(t, p, rt, "n")
	in := mustRun(t, p, rt, n.GetId(), "stubborn", "drone")
	waitFor(t, 5*time.Second, "the trap to be installed", func() bool {
		// Once sh has exec'd sleep, SIGTERM is ignored for good.
		b, _ := os.ReadFile("/proc/" + pidOf(t, rt, in.GetId()) + "/comm")
		return strings.TrimSpace(string(b)) == "sleep"
	})

	start := time.Now()
	deleted := make(chan time.Duration, 1)
	go func() {
		mustDelete(t, p, rt, in.GetId())
		deleted <- time.Since(start)
	}()
	// While the delete waits out the grace period, nothing may start the
	// instance again (pilot reviving what it sees lost): a process
	// started then would outlive the removed record.
	waitFor(t, 5*time.Second, "the instance to be marked deleting", func() bool {
		return readState(t, rt).Instances[in.GetId()].Deleting
	})
	_, err := p.StartInstance(t.Context(), &providerv1.StartInstanceRequest{Runtime: rt, InstanceId: in.GetId(), IdempotencyToken: "revive"})
	wantCode(t, err, codes.FailedPrecondition, "being deleted")
	_, err = p.RunInstance(t.Context(), runReq(rt, n.GetId(), "stubborn", "drone"))
	wantCode(t, err, codes.FailedPrecondition, "being deleted")
	if took := <-deleted; took < grace {
		t.Errorf("DeleteInstance took %v; a process ignoring SIGTERM should have held it for the %v grace", took, grace)
	}
	if pids := instanceProcs(in.GetId()); len(pids) != 0 {
		t.Errorf("processes %v survive", pids)
	}
}

// pidOf reads the recorded pid from state.json.
func pidOf(t *testing.T, rt *providerv1.Runtime, id string) string {
	t.Helper()
	st := readState(t, rt)
	return strconv.Itoa(st.Instances[id].PID)
}

func readState(t *testing.T, rt *providerv1.Runtime) *state {
	t.Helper()
	st, err := loadState(rt.Config[keyRootDir])
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func writeState(t *testing.T, rt *providerv1.Runtime, st *state) {
	t.Helper()
	p := New(Config{})
	defer p.Close()
	cfg, err := p.parseRuntime(rt)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&tx{cfg: cfg, st: st}).save(); err != nil {
		t.Fatal(err)
	}
}

func TestStateFollowsTheProcess(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	n := mustNetwork(t, p, rt, "n")
	in := mustRun(t, p, rt, n.GetId(), "i", "drone")
	defer mustDelete(t, p, rt, in.GetId())

	rec := readState(t, rt).Instances[in.GetId()]
	if err := syscall.Kill(rec.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "LOST after the process died", func() bool {
		return getState(t, p, rt, in.GetId()) == providerv1.InstanceState_INSTANCE_STATE_LOST
	})

	// A recycled pid: a live process (this test) with another start time
	// is not the instance, and DeleteInstance must leave it alone.
	st := readState(t, rt)
	st.Instances[in.GetId()].PID = os.Getpid()
	st.Instances[in.GetId()].StartTime = 1
	writeState(t, rt, st)
	if s := getState(t, p, rt, in.GetId()); s != providerv1.InstanceState_INSTANCE_STATE_LOST {
		t.Errorf("instance whose pid was recycled is %v, want LOST", s)
	}
}

// A lost instance comes back on a retried RunInstance with its token
// (same id, address and data); a stopped one stays stopped until
// StartInstance; stop and start are idempotent.
func TestStopStartAndRevival(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	n := mustNetwork(t, p, rt, "n")
	in := mustRun(t, p, rt, n.GetId(), "i", "drone")
	defer mustDelete(t, p, rt, in.GetId())
	ctx := context.Background()
	kept := filepath.Join(rt.Config[keyRootDir], "instances", in.GetId(), rootDir, "kept")
	if err := os.WriteFile(kept, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, pid := range instanceProcs(in.GetId()) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitFor(t, 5*time.Second, "LOST", func() bool { return getState(t, p, rt, in.GetId()) == providerv1.InstanceState_INSTANCE_STATE_LOST })
	again, err := p.RunInstance(ctx, runReq(rt, n.GetId(), "i", "drone"))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetId() != in.GetId() || again.GetAddress() != in.GetAddress() || again.GetState() != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("retry of a lost instance = %v, want %s at %s RUNNING", again, in.GetId(), in.GetAddress())
	}
	if b, err := os.ReadFile(kept); err != nil || string(b) != "data" {
		t.Fatalf("the revived instance lost its data: %q, %v", b, err)
	}

	for range 2 {
		st, err := p.StopInstance(ctx, &providerv1.StopInstanceRequest{Runtime: rt, InstanceId: in.GetId(), IdempotencyToken: "stop-1"})
		if err != nil || st.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
			t.Fatalf("stop: %v, %v", st, err)
		}
	}
	if pids := instanceProcs(in.GetId()); len(pids) != 0 {
		t.Fatalf("%d processes left after stop", len(pids))
	}
	// A retried RunInstance does not undo a stop.
	if r, err := p.RunInstance(ctx, runReq(rt, n.GetId(), "i", "drone")); err != nil || r.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
		t.Fatalf("RunInstance of a stopped instance: %v, %v; want it left stopped", r, err)
	}
	for range 2 {
		st, err := p.StartInstance(ctx, &providerv1.StartInstanceRequest{Runtime: rt, InstanceId: in.GetId(), IdempotencyToken: "start-1"})
		if err != nil || st.GetState() != providerv1.InstanceState_INSTANCE_STATE_RUNNING || st.GetAddress() != in.GetAddress() {
			t.Fatalf("start: %v, %v", st, err)
		}
	}
	waitFor(t, 5*time.Second, "the drone and its daemon after start", func() bool { return len(instanceProcs(in.GetId())) == 2 })
	if _, err := p.StopInstance(ctx, &providerv1.StopInstanceRequest{Runtime: rt, InstanceId: "i-missing"}); status.Code(err) != codes.NotFound {
		t.Fatalf("stop of an unknown instance: %v, want NotFound", err)
	}
}

func TestInterruptedStartIsAdoptedNotRepeated(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	n := mustNetwork(t, p, rt, "n")
	in := mustRun(t, p, rt, n.GetId(), "i", "drone")
	defer mustDelete(t, p, rt, in.GetId())
	waitFor(t, 10*time.Second, "drone and daemon", func() bool { return len(instanceProcs(in.GetId())) == 2 })
	orig := readState(t, rt).Instances[in.GetId()]

	// What a plugin killed between spawning and recording leaves behind.
	st := readState(t, rt)
	st.Instances[in.GetId()].PID = 0
	st.Instances[in.GetId()].StartTime = 0
	writeState(t, rt, st)
	if s := getState(t, p, rt, in.GetId()); s != providerv1.InstanceState_INSTANCE_STATE_PENDING {
		t.Errorf("state with no recorded process = %v, want PENDING", s)
	}

	again := mustRun(t, p, rt, n.GetId(), "i", "drone")
	if again.GetId() != in.GetId() || again.GetState() != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Errorf("retry = %v, want %s RUNNING", again, in.GetId())
	}
	if got := readState(t, rt).Instances[in.GetId()]; got.PID != orig.PID || got.StartTime != orig.StartTime {
		t.Errorf("adopted pid %d (start %d), want the original %d (start %d)", got.PID, got.StartTime, orig.PID, orig.StartTime)
	}
	if pids := instanceProcs(in.GetId()); len(pids) != 2 {
		t.Errorf("%d processes after the retry, want the original 2", len(pids))
	}
}

func TestConcurrentRunInstanceStartsOneProcess(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeFrontgate, fakeFrontgate))
	p := newProvider(t, Config{})
	n := mustNetwork(t, p, rt, "n")
	const calls = 5
	ids := make([]string, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := p.RunInstance(context.Background(), runReq(rt, n.GetId(), "same", "drone"))
			ids[i], errs[i] = in.GetId(), err
		}()
	}
	wg.Wait()
	for i := range calls {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("call %d: %s, %v; call 1: %s", i, ids[i], errs[i], ids[0])
		}
	}
	defer mustDelete(t, p, rt, ids[0])
	if pids := scanProcs(EnvRoot + "=" + rt.Config[keyRootDir] + "/"); len(pids) != 1 {
		t.Errorf("%d processes for %d calls with one token, want 1", len(pids), calls)
	}
}

func TestStateSurvivesNewProvider(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p1 := New(Config{})
	n := mustNetwork(t, p1, rt, "n")
	in := mustRun(t, p1, rt, n.GetId(), "i", "drone")
	_ = p1.Close()

	p2 := newProvider(t, Config{})
	if n2 := mustNetwork(t, p2, rt, "n"); n2.GetId() != n.GetId() {
		t.Errorf("CreateNetwork retried on a new provider gave %s, want %s", n2.GetId(), n.GetId())
	}
	if in2 := mustRun(t, p2, rt, n.GetId(), "i", "drone"); in2.GetId() != in.GetId() {
		t.Errorf("RunInstance retried on a new provider gave %s, want %s", in2.GetId(), in.GetId())
	}
	if s := getState(t, p2, rt, in.GetId()); s != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Errorf("state = %v, want RUNNING", s)
	}
	mustDelete(t, p2, rt, in.GetId())
	if pids := instanceProcs(in.GetId()); len(pids) != 0 {
		t.Errorf("processes %v survive", pids)
	}
}

func TestRangeClaims(t *testing.T) {
	bin := writeBinDir(t, fakeDrone, fakeFrontgate)
	ranges := filepath.Join(t.TempDir(), "ranges")
	rtFor := func(root string) *providerv1.Runtime {
		return &providerv1.Runtime{Config: map[string]string{keyRootDir: root, keyBinDir: bin, keyRangesDir: ranges}}
	}
	p := newProvider(t, Config{})
	rootA, rootB := openDir(t), openDir(t)
	a1 := mustNetwork(t, p, rtFor(rootA), "a1")
	b1 := mustNetwork(t, p, rtFor(rootB), "b1")
	a2 := mustNetwork(t, p, rtFor(rootA), "a2")
	got := []string{a1.GetCidr(), b1.GetCidr(), a2.GetCidr()}
	want := []string{"127.10.1.0/24", "127.10.2.0/24", "127.10.3.0/24"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ranges across two roots = %v, want %v", got, want)
			break
		}
	}

	// Deleting releases the claim for everyone.
	if _, err := p.DeleteNetwork(t.Context(), &providerv1.DeleteNetworkRequest{Runtime: rtFor(rootB), NetworkId: b1.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ranges, "127.10.2.0")); !os.IsNotExist(err) {
		t.Errorf("claim of a deleted network still there: %v", err)
	}
	if a3 := mustNetwork(t, p, rtFor(rootA), "a3"); a3.GetCidr() != "127.10.2.0/24" {
		t.Errorf("freed range not reused: got %s", a3.GetCidr())
	}

	// A wider network claims every /24 block it spans, aligned, and none
	// that another network holds; deleting it frees them all.
	wide := func(root string) *providerv1.Runtime {
		rt := rtFor(root)
		rt.Config[keyNetworkPrefix] = "22"
		return rt
	}
	w := mustNetwork(t, p, wide(rootB), "w1")
	if w.GetCidr() != "127.10.4.0/22" {
		t.Errorf("first /22 with 127.10.1-3 taken = %s, want 127.10.4.0/22", w.GetCidr())
	}
	for y := 4; y <= 7; y++ {
		if _, err := os.Stat(filepath.Join(ranges, fmt.Sprintf("127.10.%d.0", y))); err != nil {
			t.Errorf("block 127.10.%d of the /22 not claimed: %v", y, err)
		}
	}
	if n := mustNetwork(t, p, rtFor(rootA), "a4"); n.GetCidr() != "127.10.8.0/24" {
		t.Errorf("a /24 after the /22 = %s, want 127.10.8.0/24", n.GetCidr())
	}
	if _, err := p.DeleteNetwork(t.Context(), &providerv1.DeleteNetworkRequest{Runtime: wide(rootB), NetworkId: w.GetId()}); err != nil {
		t.Fatal(err)
	}
	for y := 4; y <= 7; y++ {
		if _, err := os.Stat(filepath.Join(ranges, fmt.Sprintf("127.10.%d.0", y))); !os.IsNotExist(err) {
			t.Errorf("block 127.10.%d of a deleted /22 still claimed: %v", y, err)
		}
	}

	// A root that vanished (a removed test directory) leaves stale claims.
	gone := filepath.Join(openDir(t), "gone")
	c1 := mustNetwork(t, p, rtFor(gone), "c1")
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	if c := mustNetwork(t, p, rtFor(rootB), "b2"); c.GetCidr() != c1.GetCidr() {
		t.Errorf("stale claim of %s not reclaimed: got %s", c1.GetCidr(), c.GetCidr())
	}
}

func TestCorruptStateIsReported(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	if err := os.WriteFile(filepath.Join(rt.Config[keyRootDir], stateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := p.ListInstances(t.Context(), &providerv1.ListInstancesRequest{Runtime: rt})
	wantCode(t, err, codes.Internal, stateFile)
}

func TestLockWaitHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".lock")
	unlock, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = lockFile(ctx, path)
	wantCode(t, err, codes.DeadlineExceeded, path)
}

func TestInstanceEnv(t *testing.T) {
	cfg := runtimeConfig{root: "/r", bin: "/b"}
	rec := &instance{ID: "i-1", Address: "127.10.1.2"}
	// Pilot's environment reaches the plugin: of it, an instance gets the
	// locale and time zone, nothing else.
	base := []string{"HOME=/root", "PATH=/usr/bin", "HANGAR_PROVIDER_PLUGIN=cookie", "PLUGIN_MIN_PORT=1",
		"HANGAR_INSTANCE_ID=i-outer", "HANGAR_SECRET_KEY=k", "HANGAR_TOKEN=hgt_x", "USER=root",
		"LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC"}
	got := strings.Join(instanceEnv(base, cfg, rec), "\n")
	want := strings.Join([]string{"LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC", "HANGAR_INSTANCE_ID=i-1", "HANGAR_ADDRESS=127.10.1.2",
		"HANGAR_ROOT=/r/instances/i-1/root", "HOME=/r/instances/i-1/home", "TMPDIR=/r/instances/i-1/tmp", "PATH=/b:/usr/bin"}, "\n")
	if got != want {
		t.Errorf("instanceEnv =\n%s\nwant\n%s", got, want)
	}
}

func TestParseListening(t *testing.T) {
	var le [4]byte
	put := func(a, b, c, d byte) string {
		le = [4]byte{a, b, c, d}
		return strings.ToUpper(strconv.FormatUint(uint64(binary.NativeEndian.Uint32(le[:])), 16))
	}
	pad := func(h string) string { return strings.Repeat("0", 8-len(h)) + h }
	table := "  sl  local_address rem_address   st tx_queue\n" +
		"   0: " + pad(put(127, 10, 3, 1)) + ":2553 00000000:0000 0A 00000000:00000000\n" + // listening
		"   1: " + pad(put(127, 10, 4, 2)) + ":1F90 0100007F:AE09 06 00000000:00000000\n" + // time-wait
		"   2: " + pad(put(10, 0, 0, 1)) + ":0050 00000000:0000 0A 00000000:00000000\n" + // not loopback
		"   3: garbage\n"
	got := parseListening([]byte(table))
	if len(got) != 1 || !got["127.10.3"] {
		t.Errorf("parseListening = %v, want only 127.10.3", got)
	}
}

func TestClaimSkipsRangesSomeoneListensOn(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	l, err := net.Listen("tcp", "127.10.1.1:0")
	if err != nil {
		t.Skipf("cannot listen on 127.10.1.1: %v", err)
	}
	defer l.Close()
	p := newProvider(t, Config{})
	if n := mustNetwork(t, p, rt, "n"); n.GetCidr() != "127.10.2.0/24" {
		t.Errorf("with 127.10.1.1 in use by another program, the first network got %s, want 127.10.2.0/24", n.GetCidr())
	}
}
