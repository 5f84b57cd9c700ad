package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/drone"
	"github.com/hangarhq/hangar/drone/agent"
	"github.com/hangarhq/hangar/frontgate"
	"github.com/hangarhq/hangar/internal/userdata"
	"github.com/hangarhq/hangar/providers/sdk"
)

// frontgateImage is the image pilot asks for a network's frontgate.
const frontgateImage = "frontgate"

// restartDelay is how long a simulated instance's init waits before it
// starts an agent that exited with an error again.
const restartDelay = time.Second

// instance is one simulated machine: its record, its directory and the
// agent running in it.
type instance struct {
	pb       *providerv1.Instance // guarded by Provider.mu
	rt       runtimeConfig
	userData []byte
	// dir is the instance's directory: data/ holds the agent's state,
	// root/ is the filesystem root its files are rendered into.
	dir string
	// exec outlives stops, as a machine's disk does.
	exec *fakeExec

	// stop ends the running agent; done is closed when it has. Both are
	// nil while the instance is stopped. Guarded by Provider.mu.
	stop context.CancelFunc
	done chan struct{}
}

// RunInstance makes an instance and starts its agent: a frontgate for the
// image "frontgate", a drone for any other. The same idempotency_token
// answers the same instance. run_latency delays the call and
// run_failure_rate fails it (before anything is made, as a cloud's
// refused call does).
func (p *Provider) RunInstance(ctx context.Context, req *providerv1.RunInstanceRequest) (*providerv1.Instance, error) {
	cfg, err := parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"idempotency_token", req.GetIdempotencyToken()}, {"network_id", req.GetNetworkId()}} {
		if err := required(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if req.GetCpu() < 0 || req.GetMemoryMib() < 0 || req.GetVolumeGib() < 0 {
		return nil, status.Error(codes.InvalidArgument, "cpu, memory_mib and volume_gib must not be negative (0 is the default)")
	}
	key := scoped(cfg.id, "inst", req.GetIdempotencyToken())
	p.mu.Lock()
	if id, ok := p.byToken[key]; ok {
		defer p.mu.Unlock()
		return proto.Clone(p.instances[id].pb).(*providerv1.Instance), nil
	}
	p.mu.Unlock()
	if cfg.runLatency > 0 {
		t := time.NewTimer(cfg.runLatency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if p.chance(cfg.runFailureRate) {
		return nil, status.Error(codes.Unavailable, "injected failure (runtime config run_failure_rate); retry")
	}
	p.sweep(cfg.rootDir)

	p.mu.Lock()
	defer p.mu.Unlock()
	if id, ok := p.byToken[key]; ok {
		return proto.Clone(p.instances[id].pb).(*providerv1.Instance), nil
	}
	n, ok := p.networks[req.GetNetworkId()]
	if !ok || n.rt != cfg.id {
		return nil, sdk.NotFound("network", req.GetNetworkId())
	}
	addr, err := n.address(req.GetImage() == frontgateImage)
	if err != nil {
		return nil, err
	}
	p.seq++
	id := fmt.Sprintf("sim-%d-%06d", os.Getpid(), p.seq)
	in := &instance{
		rt: cfg, userData: req.GetUserData(), dir: filepath.Join(cfg.rootDir, "instances", id),
		pb: &providerv1.Instance{
			Id: id, NetworkId: n.pb.GetId(), Name: req.GetName(), Address: addr, Image: req.GetImage(),
			State: providerv1.InstanceState_INSTANCE_STATE_RUNNING, Labels: req.GetLabels(),
			Cpu: req.GetCpu(), MemoryMib: req.GetMemoryMib(), VolumeGib: req.GetVolumeGib(), Booted: true,
		},
	}
	var who struct {
		NodeID string `json:"node_id"`
	}
	_ = json.Unmarshal(req.GetUserData(), &who) // a frontgate's, or none: no node id
	in.exec = newFakeExec(p.ctx, who.NodeID, cfg.exec, func() bool { return p.chance(cfg.exec.failureRate) })
	if err := os.MkdirAll(filepath.Join(in.dir, "root"), 0o700); err != nil {
		n.release(addr)
		return nil, status.Errorf(codes.Internal, "make the instance's directory under root_dir: %v", err)
	}
	p.instances[id], p.byToken[key] = in, id
	p.startAgent(in)
	return proto.Clone(in.pb).(*providerv1.Instance), nil
}

// startAgent starts the instance's agent; callers hold mu.
func (p *Provider) startAgent(in *instance) {
	ctx, cancel := context.WithCancel(p.ctx)
	done := make(chan struct{})
	in.stop, in.done = cancel, done
	id, addr, image := in.pb.GetId(), in.pb.GetAddress(), in.pb.GetImage()
	p.agents.Add(1)
	go func() {
		defer p.agents.Done()
		defer close(done)
		log := p.agentLogger().With("instance_id", id)
		for {
			var err error
			if image == frontgateImage {
				err = p.runFrontgate(ctx, in, addr, log)
			} else {
				err = p.runDrone(ctx, in, log)
			}
			if ctx.Err() != nil {
				return
			}
			var bad badUserData
			if errors.As(err, &bad) {
				// An instance whose user data names no agent runs none, as
				// a machine booted from an image without a drone would.
				p.log.Warn("sim instance runs no agent", "instance_id", id, "err", err)
				<-ctx.Done()
				return
			}
			p.log.Warn("sim instance's agent exited; restarting it", "instance_id", id, "err", err, "in", restartDelay)
			t := time.NewTimer(restartDelay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}()
}

// badUserData is user data that names no agent to run.
type badUserData struct{ err error }

func (b badUserData) Error() string { return "user data: " + b.err.Error() }

// runFrontgate runs a frontgate on the instance's address until ctx ends
// or it fails.
func (p *Provider) runFrontgate(ctx context.Context, in *instance, addr string, log *slog.Logger) error {
	var ud userdata.Frontgate
	if err := json.Unmarshal(in.userData, &ud); err != nil {
		return badUserData{err}
	}
	if err := ud.Validate(); err != nil {
		return badUserData{err}
	}
	if in.rt.frontgateBinary != "" {
		return runFrontgateProcess(ctx, in.rt.frontgateBinary, in.dir, in.userData, addr)
	}
	hostPort := func(port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }
	fg, err := frontgate.Start(ctx, frontgate.Config{
		FrontgateID:   ud.FrontgateID,
		PilotAddress:  ud.PilotAddress,
		JoinToken:     ud.JoinToken,
		CAPEM:         []byte(ud.CAPEM),
		DataDir:       filepath.Join(in.dir, "data"),
		EtcdClientURL: "https://" + hostPort(userdata.FrontgateEtcdPort),
		EtcdPeerURL:   "https://" + hostPort(userdata.FrontgatePeerPort),
		DroneListen:   hostPort(userdata.FrontgateDronePort),
		// Small WAL segments: a hundred frontgates in one process would
		// preallocate 6.4 GB at etcd's 64 MB.
		WALSegmentBytes: 4 << 20,
		Version:         "sim-" + Version,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	defer fg.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-fg.Failed():
		return fg.Err()
	}
}

// runFrontgateProcess runs the frontgate binary bin on addr until ctx ends
// (then SIGTERM, and SIGKILL 10 s later) or it exits. It dies with the
// sim's process, as an instance in the sim does. Its log is the instance's
// frontgate.log.
func runFrontgateProcess(ctx context.Context, bin, dir string, userData []byte, addr string) error {
	ud := filepath.Join(dir, "userdata.json")
	if err := os.WriteFile(ud, userData, 0o600); err != nil {
		return fmt.Errorf("frontgate process: write its user data: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "frontgate.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("frontgate process: open its log: %w", err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "--userdata", ud, "--data-dir", filepath.Join(dir, "data"), "--address", addr, "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("frontgate process %s: %w (its log: %s)", bin, err, logf.Name())
}

// runDrone runs a drone in the instance until ctx ends or it fails.
func (p *Provider) runDrone(ctx context.Context, in *instance, log *slog.Logger) error {
	var ud userdata.Drone
	if err := json.Unmarshal(in.userData, &ud); err != nil {
		return badUserData{err}
	}
	if err := ud.Validate(); err != nil {
		return badUserData{err}
	}
	var ex agent.Executor
	var hook func(context.Context, string) error
	var metricsInterval time.Duration
	if !in.rt.exec.real {
		ex, hook = in.exec, in.exec.hook
		// Thousands of fake drones share this host: none samples it.
		metricsInterval = -1
	}
	return drone.Run(ctx, drone.Config{
		UserData:   ud,
		DataDir:    filepath.Join(in.dir, "data"),
		Root:       filepath.Join(in.dir, "root"),
		Supervisor: p.cfg.Supervisor,
		Executor:   ex,
		RunHook:    hook,
		Version:    "sim-" + Version,
		// A negative interval turns metrics off.
		MetricsInterval: metricsInterval,
		Logger:          log,
	})
}

// agentLogger is the agents' logger, at AgentLogLevel.
func (p *Provider) agentLogger() *slog.Logger {
	level := p.cfg.AgentLogLevel
	if level == 0 {
		level = slog.LevelWarn
	}
	return slog.New(minLevel{Handler: p.log.Handler(), min: level})
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}
func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// sweep removes, once per root_dir, the directories of instances an
// earlier plugin process made: they died with it.
func (p *Provider) sweep(rootDir string) {
	p.mu.Lock()
	if p.swept == nil {
		p.swept = map[string]bool{}
	}
	done := p.swept[rootDir]
	p.swept[rootDir] = true
	p.mu.Unlock()
	if done {
		return
	}
	entries, _ := os.ReadDir(filepath.Join(rootDir, "instances"))
	for _, e := range entries {
		// sim-<pid>-<seq>: the pid of the process that made it.
		f := strings.Split(e.Name(), "-")
		if len(f) != 3 || f[0] != "sim" {
			continue
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(rootDir, "instances", e.Name())); err != nil {
			p.log.Warn("remove a dead sim instance's directory", "dir", e.Name(), "err", err)
		}
	}
}

// lookup finds an instance of the runtime; callers hold mu.
func (p *Provider) lookup(rt, id string) (*instance, error) {
	if err := required("instance_id", id); err != nil {
		return nil, err
	}
	in, ok := p.instances[id]
	if !ok || in.rt.id != rt {
		return nil, sdk.NotFound("instance", id)
	}
	return in, nil
}

// locked reads the runtime and runs fn on its instance id with mu held.
func (p *Provider) locked(rt *providerv1.Runtime, id string, fn func(*instance) error) error {
	cfg, err := parseRuntime(rt)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	in, err := p.lookup(cfg.id, id)
	if err != nil {
		return err
	}
	return fn(in)
}

// halt takes the instance's running agent away (callers hold mu) and
// returns what ends it and waits for it, to call without mu.
func (in *instance) halt() (wait func()) {
	stop, done := in.stop, in.done
	in.stop, in.done = nil, nil
	return func() {
		if stop != nil {
			stop()
			<-done
		}
	}
}

// GetInstance answers the instance's record.
func (p *Provider) GetInstance(_ context.Context, req *providerv1.GetInstanceRequest) (*providerv1.Instance, error) {
	var out *providerv1.Instance
	err := p.locked(req.GetRuntime(), req.GetInstanceId(), func(in *instance) error {
		out = proto.Clone(in.pb).(*providerv1.Instance)
		return nil
	})
	return out, err
}

// ListInstances lists the runtime's instances, of one network if named.
func (p *Provider) ListInstances(_ context.Context, req *providerv1.ListInstancesRequest) (*providerv1.ListInstancesResponse, error) {
	cfg, err := parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := &providerv1.ListInstancesResponse{}
	for _, in := range p.instances {
		if in.rt.id == cfg.id && (req.GetNetworkId() == "" || in.pb.GetNetworkId() == req.GetNetworkId()) {
			out.Instances = append(out.Instances, proto.Clone(in.pb).(*providerv1.Instance))
		}
	}
	return out, nil
}

// DeleteInstance stops the agent, frees the address and removes the
// instance's directory; deleting twice succeeds.
func (p *Provider) DeleteInstance(_ context.Context, req *providerv1.DeleteInstanceRequest) (*providerv1.DeleteInstanceResponse, error) {
	var gone *instance
	var wait func()
	err := p.locked(req.GetRuntime(), req.GetInstanceId(), func(in *instance) error {
		delete(p.instances, in.pb.GetId())
		for k, v := range p.byToken {
			if v == in.pb.GetId() {
				delete(p.byToken, k)
			}
		}
		if n := p.networks[in.pb.GetNetworkId()]; n != nil {
			n.release(in.pb.GetAddress())
		}
		gone, wait = in, in.halt()
		return nil
	})
	if status.Code(err) == codes.NotFound {
		return &providerv1.DeleteInstanceResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	wait()
	gone.exec.Close()
	if err := os.RemoveAll(gone.dir); err != nil {
		return nil, status.Errorf(codes.Internal, "remove instance %s's directory: %v", gone.pb.GetId(), err)
	}
	return &providerv1.DeleteInstanceResponse{}, nil
}

// StopInstance stops the agent, as a machine's power-off does; the
// instance keeps its directory and address.
func (p *Provider) StopInstance(_ context.Context, req *providerv1.StopInstanceRequest) (*providerv1.Instance, error) {
	var out *providerv1.Instance
	var wait func()
	err := p.locked(req.GetRuntime(), req.GetInstanceId(), func(in *instance) error {
		wait = in.halt()
		in.pb.State, in.pb.Booted = providerv1.InstanceState_INSTANCE_STATE_STOPPED, false
		out = proto.Clone(in.pb).(*providerv1.Instance)
		return nil
	})
	if err != nil {
		return nil, err
	}
	wait()
	return out, nil
}

// StartInstance starts a stopped instance's agent again: a boot, so the
// answer says booted.
func (p *Provider) StartInstance(_ context.Context, req *providerv1.StartInstanceRequest) (*providerv1.Instance, error) {
	var out *providerv1.Instance
	err := p.locked(req.GetRuntime(), req.GetInstanceId(), func(in *instance) error {
		if in.stop == nil {
			in.pb.State, in.pb.Booted = providerv1.InstanceState_INSTANCE_STATE_RUNNING, true
			p.startAgent(in)
		}
		out = proto.Clone(in.pb).(*providerv1.Instance)
		return nil
	})
	return out, err
}
