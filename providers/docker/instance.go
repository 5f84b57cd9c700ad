package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Inside every instance's container. The images put the agents in
// /hangar/bin (docs/images.md); the provider adds the rest before the
// container first starts.
const (
	droneBin     = "/hangar/bin/drone"
	frontgateBin = "/hangar/bin/frontgate"
	userDataPath = "hangar/userdata.json"
	dataDir      = "/hangar/data"
	// statePath keeps what Docker cannot change on a container after
	// creation: whether it was stopped on purpose, and the resources
	// asked for last.
	statePath = "hangar/instance.json"
)

const maxMountPoints = 3

// instState is the provider's record inside a container (statePath).
type instState struct {
	// Stopped: StopInstance stopped it. An exited container that was not
	// stopped on purpose is LOST.
	Stopped   bool  `json:"stopped"`
	CPU       int32 `json:"cpu"`
	MemoryMiB int32 `json:"memory_mib"`
	VolumeGiB int32 `json:"volume_gib"`
}

// RunInstance creates and starts the token's container, or converges the
// one it made: a container never started (a call cut short) is started,
// one that exited without being stopped (LOST) is started again, with its
// id, address and volume.
func (p *Provider) RunInstance(ctx context.Context, req *providerv1.RunInstanceRequest) (*providerv1.Instance, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{
		{"idempotency_token", req.GetIdempotencyToken()},
		{"network_id", req.GetNetworkId()},
		{"image", req.GetImage()},
	} {
		if err := required(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if req.GetCpu() < 0 || req.GetMemoryMib() < 0 || req.GetVolumeGib() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "cpu %d, memory_mib %d, volume_gib %d: none may be negative (0 is the provider's default)",
			req.GetCpu(), req.GetMemoryMib(), req.GetVolumeGib())
	}
	if req.GetMemoryMib() > 0 && req.GetMemoryMib() < 6 {
		return nil, status.Errorf(codes.InvalidArgument, "memory_mib %d: Docker needs at least 6 MiB", req.GetMemoryMib())
	}
	mps, err := mountPoints(req.GetMountPoints())
	if err != nil {
		return nil, err
	}
	labels, err := callerLabels(req.GetLabels())
	if err != nil {
		return nil, err
	}
	name := instanceName(cfg.id, req.GetIdempotencyToken())
	for attempt := 0; ; attempt++ {
		ins, err := cfg.c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err == nil {
			return p.converge(ctx, cfg, req, ins.Container)
		}
		if status.Code(engineErr(err)) != codes.NotFound {
			return nil, engineErr(err)
		}
		err = p.create(ctx, cfg, req, name, mps, labels)
		if status.Code(err) == codes.Aborted && attempt < 3 {
			continue // a concurrent call created it: converge that one
		}
		if err != nil {
			return nil, err
		}
	}
}

// mountPoints checks the data volume's mount points; none means /data.
func mountPoints(in []string) ([]string, error) {
	if len(in) == 0 {
		return []string{"/data"}, nil
	}
	if len(in) > maxMountPoints {
		return nil, status.Errorf(codes.InvalidArgument, "mount_points: %d given, at most %d", len(in), maxMountPoints)
	}
	for i, m := range in {
		if !path.IsAbs(m) || path.Clean(m) != m || m == "/" || strings.HasPrefix(m, "/hangar") {
			return nil, status.Errorf(codes.InvalidArgument, "mount_points[%d] %q: an absolute, clean path other than / and /hangar is required", i, m)
		}
		if slices.Contains(in[:i], m) {
			return nil, status.Errorf(codes.InvalidArgument, "mount_points[%d] %q is given twice", i, m)
		}
	}
	return in, nil
}

// create makes the token's container (not started), with its volumes and
// address. Aborted: a container of the name exists (a concurrent call).
func (p *Provider) create(ctx context.Context, cfg *rtConfig, req *providerv1.RunInstanceRequest, name string, mps []string, labels map[string]string) error {
	netID := req.GetNetworkId()
	netw, err := p.getNetwork(ctx, cfg, netID)
	if err != nil {
		return err
	}
	image, entry, err := p.entrypoint(ctx, cfg, req.GetImage())
	if err != nil {
		return err
	}
	vol, gib, err := p.volumeFor(ctx, cfg, req, name, mps)
	if err != nil {
		return err
	}

	mounts := make([]mount.Mount, len(mps))
	for i, mp := range mps {
		mounts[i] = mount.Mount{Type: mount.TypeVolume, Source: volumePart(vol, i), Target: mp}
		if i > 0 {
			if err := p.ensureVolume(ctx, cfg, volumePart(vol, i), kindVolumePart, vol, 0, req.GetLabels()); err != nil {
				return err
			}
		}
	}
	res := p.resources(ctx, cfg, req.GetCpu(), req.GetMemoryMib())
	// The address is chosen here, not by Docker at start, so that it
	// survives stop and start like a cloud instance's private address;
	// the lock holds until the container that claims it exists.
	addr, err := func() (netip.Addr, error) {
		p.alloc.Lock()
		defer p.alloc.Unlock()
		addr, err := p.freeAddress(ctx, cfg, netw)
		if err != nil {
			return addr, err
		}
		all := merge(labels, base(cfg, kindInstance), map[string]string{
			labelToken:   req.GetIdempotencyToken(),
			labelName:    req.GetName(),
			labelNetwork: netID,
			labelImage:   req.GetImage(),
			labelAddress: addr.String(),
			labelVolume:  vol,
			labelMounts:  strings.Join(mps, ","),
			labelCPU:     strconv.Itoa(int(req.GetCpu())),
			labelMemory:  strconv.Itoa(int(req.GetMemoryMib())),
			labelVolGiB:  strconv.Itoa(int(gib)),
		})
		_, err = cfg.c.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: name,
			Config: &container.Config{
				Image:      image,
				Hostname:   hostname(req.GetName(), name),
				Entrypoint: append(entry, addrArgs(req.GetImage(), addr)...),
				Cmd:        []string{},
				Env:        []string{"HANGAR_INSTANCE_ID=" + name, "HANGAR_ADDRESS=" + addr.String(), "HANGAR_ROOT=/"},
				Labels:     all,
			},
			HostConfig: &container.HostConfig{
				NetworkMode:   container.NetworkMode(netID),
				Mounts:        mounts,
				Resources:     res,
				RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
			},
			NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
				netID: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: addr}},
			}},
		})
		return addr, engineErr(err)
	}()
	if err != nil {
		return err
	}
	// The rest (files, the uplink, the start) is converge's, for this
	// call and for a retry of one cut short here.
	p.log.Info("container created", "instance_id", name, "image", image, "address", addr.String(), "volume_id", vol)
	return nil
}

// entrypoint is the image a request runs and the agent's command line.
func (p *Provider) entrypoint(ctx context.Context, cfg *rtConfig, image string) (string, []string, error) {
	agent := []string{droneBin, "--userdata", "/" + userDataPath, "--data-dir", dataDir, "--root", "/"}
	if image == FrontgateImage {
		image = cfg.frontgate
		agent = []string{frontgateBin, "--userdata", "/" + userDataPath, "--data-dir", dataDir}
	}
	if _, err := cfg.c.ImageInspect(ctx, image); err != nil {
		if status.Code(engineErr(err)) == codes.NotFound {
			return "", nil, status.Errorf(codes.InvalidArgument, "image %q is not on the Docker Engine: build it (make images, docs/images.md), or map the role to another image (hangar image set)", image)
		}
		return "", nil, engineErr(err)
	}
	return image, agent, nil
}

func addrArgs(image string, addr netip.Addr) []string {
	if image == FrontgateImage {
		return []string{"--address", addr.String()}
	}
	return nil
}

// hostname is the node's name where it is a valid host name.
func hostname(name, fallback string) string {
	if len(name) == 0 || len(name) > 63 {
		return fallback
	}
	for _, r := range name {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fallback
		}
	}
	return name
}

// resources turns cpu and memory into Docker limits; 0 is unlimited. A cpu
// count above the Engine's is capped there (Docker refuses it), while the
// instance still reports what was asked.
func (p *Provider) resources(ctx context.Context, cfg *rtConfig, cpu, memMiB int32) container.Resources {
	var r container.Resources
	if cpu > 0 {
		r.NanoCPUs = int64(min(int(cpu), p.hostCPUs(ctx, cfg))) * 1e9
	}
	if memMiB > 0 {
		r.Memory = int64(memMiB) << 20
		r.MemorySwap = r.Memory
	}
	return r
}

// freeAddress is the lowest address of the network that none of its
// containers (running or not) holds; .1 is the gateway.
func (p *Provider) freeAddress(ctx context.Context, cfg *rtConfig, netw *providerv1.Network) (netip.Addr, error) {
	prefix, err := netip.ParsePrefix(netw.GetCidr())
	if err != nil {
		return netip.Addr{}, status.Errorf(codes.Internal, "network %s has no usable subnet (%q)", netw.GetId(), netw.GetCidr())
	}
	list, err := cfg.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: owned(cfg, kindInstance).Add("label", labelNetwork+"="+netw.GetId())})
	if err != nil {
		return netip.Addr{}, engineErr(err)
	}
	used := map[netip.Addr]bool{}
	for _, c := range list.Items {
		if a, err := netip.ParseAddr(c.Labels[labelAddress]); err == nil {
			used[a] = true
		}
	}
	for a := prefix.Addr().Next().Next(); prefix.Contains(a); a = a.Next() {
		if !used[a] && prefix.Contains(a.Next()) { // not the broadcast address
			return a, nil
		}
	}
	return netip.Addr{}, sdk.QuotaExceeded("addresses of network "+netw.GetId(), strconv.Itoa(len(used)))
}

// writeFiles puts the user data and the provider's record into a
// container before it starts (or again while it is stopped).
func (p *Provider) writeFiles(ctx context.Context, cfg *rtConfig, name string, st instState, userData []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rec, _ := json.Marshal(st)
	files := []struct {
		name string
		mode int64
		body []byte
	}{{statePath, 0o600, rec}}
	if userData != nil {
		files = append(files, struct {
			name string
			mode int64
			body []byte
		}{userDataPath, 0o600, userData})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "hangar/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()})
	for _, f := range files {
		_ = tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), ModTime: time.Now()})
		_, _ = tw.Write(f.body)
	}
	if err := tw.Close(); err != nil {
		return status.Errorf(codes.Internal, "pack files for %s: %v", name, err)
	}
	if _, err := cfg.c.CopyToContainer(ctx, name, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		return engineErr(err)
	}
	return nil
}

// readState reads the provider's record from a container. A container
// whose creating call was cut short before the record was copied in has
// none yet: its record is then what it was created with (its labels).
func readState(ctx context.Context, cfg *rtConfig, c container.InspectResponse) (instState, error) {
	name := strings.TrimPrefix(c.Name, "/")
	st := createdState(c)
	res, err := cfg.c.CopyFromContainer(ctx, name, client.CopyFromContainerOptions{SourcePath: "/" + statePath})
	if err != nil {
		if status.Code(engineErr(err)) == codes.NotFound && c.State != nil && c.State.Status == container.StateCreated {
			return st, nil
		}
		return st, engineErr(err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		return st, status.Errorf(codes.Internal, "read %s of %s: %v", statePath, name, err)
	}
	b, err := io.ReadAll(io.LimitReader(tr, 1<<16))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		return st, status.Errorf(codes.Internal, "read %s of %s: %v", statePath, name, err)
	}
	return st, nil
}

// createdState is the record of a container as it was created (its
// labels): what it has before its first start.
func createdState(c container.InspectResponse) instState {
	l := c.Config.Labels
	return instState{CPU: atoi32(l[labelCPU]), MemoryMiB: atoi32(l[labelMemory]), VolumeGiB: atoi32(l[labelVolGiB])}
}

// converge answers the token's existing container, after checking the
// request is the one that made it, and starts it when it never started
// or was lost.
func (p *Provider) converge(ctx context.Context, cfg *rtConfig, req *providerv1.RunInstanceRequest, c container.InspectResponse) (*providerv1.Instance, error) {
	l := c.Config.Labels
	if l[labelRuntime] != cfg.id || l[labelToken] != req.GetIdempotencyToken() {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s exists but was not made by this runtime and token: remove it by hand", c.Name)
	}
	if l[labelNetwork] != req.GetNetworkId() || l[labelImage] != req.GetImage() || l[labelName] != req.GetName() ||
		(req.GetVolumeId() != "" && req.GetVolumeId() != l[labelVolume]) {
		return nil, status.Errorf(codes.InvalidArgument,
			"idempotency_token %q was already used for instance %s (network_id %s, image %q, name %q, volume_id %q); use a new token for a different instance",
			req.GetIdempotencyToken(), strings.TrimPrefix(c.Name, "/"), l[labelNetwork], l[labelImage], l[labelName], l[labelVolume])
	}
	name := strings.TrimPrefix(c.Name, "/")
	if c.State.Status == container.StateCreated {
		// Created, never started: by this call, or by one cut short,
		// maybe before the user data and the record were copied in.
		st := createdState(c)
		if err := p.writeFiles(ctx, cfg, name, st, req.GetUserData()); err != nil {
			return nil, err
		}
		if req.GetImage() == FrontgateImage {
			// The frontgate's way out: the uplink network, from which
			// it dials pilot. No other container joins it.
			if _, err := cfg.c.NetworkConnect(ctx, cfg.uplink, client.NetworkConnectOptions{Container: name}); err != nil && !strings.Contains(err.Error(), "already exists") {
				return nil, engineErr(err)
			}
		}
		return p.start(ctx, cfg, name, &st)
	}
	st, err := readState(ctx, cfg, c)
	if err != nil {
		return nil, err
	}
	if (c.State.Status == container.StateExited || c.State.Status == container.StateDead) && !st.Stopped {
		return p.start(ctx, cfg, name, &st)
	}
	return p.build(c, st, false), nil
}

// start starts a container: a boot, nothing of the last run is left. st
// is its record, when the caller has it.
func (p *Provider) start(ctx context.Context, cfg *rtConfig, name string, st *instState) (*providerv1.Instance, error) {
	if _, err := cfg.c.ContainerStart(ctx, name, client.ContainerStartOptions{}); err != nil {
		return nil, engineErr(err)
	}
	p.log.Info("container started", "instance_id", name)
	if st == nil {
		return p.describe(ctx, cfg, name, true)
	}
	c, err := p.owns(ctx, cfg, name)
	if err != nil {
		return nil, err
	}
	return p.build(c, *st, true), nil
}

// describe answers the runtime's instance name.
func (p *Provider) describe(ctx context.Context, cfg *rtConfig, name string, booted bool) (*providerv1.Instance, error) {
	c, err := p.owns(ctx, cfg, name)
	if err != nil {
		return nil, err
	}
	st, err := readState(ctx, cfg, c)
	if err != nil && c.State.Status != container.StateRemoving {
		return nil, err
	}
	return p.build(c, st, booted), nil
}

// build is the instance a container and its record make.
func (p *Provider) build(c container.InspectResponse, st instState, booted bool) *providerv1.Instance {
	name := strings.TrimPrefix(c.Name, "/")
	l := c.Config.Labels
	out := &providerv1.Instance{
		Id:        name,
		NetworkId: l[labelNetwork],
		Name:      l[labelName],
		Address:   l[labelAddress],
		Image:     l[labelImage],
		Labels:    userLabels(l),
		Cpu:       st.CPU,
		MemoryMib: st.MemoryMiB,
		VolumeGib: st.VolumeGiB,
		VolumeId:  l[labelVolume],
		Booted:    booted,
	}
	switch c.State.Status {
	case container.StateCreated:
		out.State = providerv1.InstanceState_INSTANCE_STATE_PENDING
	case container.StateRunning, container.StateRestarting, container.StatePaused:
		out.State = providerv1.InstanceState_INSTANCE_STATE_RUNNING
	case container.StateRemoving:
		out.State = providerv1.InstanceState_INSTANCE_STATE_TERMINATED
	default:
		out.State = providerv1.InstanceState_INSTANCE_STATE_LOST
		if st.Stopped {
			out.State = providerv1.InstanceState_INSTANCE_STATE_STOPPED
		}
	}
	return out
}

// GetInstance answers an instance of the runtime.
func (p *Provider) GetInstance(ctx context.Context, req *providerv1.GetInstanceRequest) (*providerv1.Instance, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if err := required("instance_id", req.GetInstanceId()); err != nil {
		return nil, err
	}
	return p.describe(ctx, cfg, req.GetInstanceId(), false)
}

// ListInstances lists the runtime's instances, or one network's.
func (p *Provider) ListInstances(ctx context.Context, req *providerv1.ListInstancesRequest) (*providerv1.ListInstancesResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	f := owned(cfg, kindInstance)
	if n := req.GetNetworkId(); n != "" {
		f = f.Add("label", labelNetwork+"="+n)
	}
	list, err := cfg.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, engineErr(err)
	}
	out := &providerv1.ListInstancesResponse{}
	for _, c := range list.Items {
		if len(c.Names) == 0 {
			continue
		}
		in, err := p.describe(ctx, cfg, strings.TrimPrefix(c.Names[0], "/"), false)
		if status.Code(err) == codes.NotFound {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out.Instances = append(out.Instances, in)
	}
	slices.SortFunc(out.Instances, func(a, b *providerv1.Instance) int { return strings.Compare(a.GetId(), b.GetId()) })
	return out, nil
}

// instanceCall is the start of every call on one instance: the runtime,
// the id given, and the container, which must be the runtime's.
func (p *Provider) instanceCall(ctx context.Context, rt *providerv1.Runtime, id string) (*rtConfig, container.InspectResponse, error) {
	cfg, err := p.parseRuntime(rt)
	if err != nil {
		return nil, container.InspectResponse{}, err
	}
	if err := required("instance_id", id); err != nil {
		return nil, container.InspectResponse{}, err
	}
	c, err := p.owns(ctx, cfg, id)
	return cfg, c, err
}

// owns checks that id is an instance of the runtime (NotFound otherwise).
func (p *Provider) owns(ctx context.Context, cfg *rtConfig, id string) (container.InspectResponse, error) {
	ins, err := cfg.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if status.Code(engineErr(err)) == codes.NotFound {
			return container.InspectResponse{}, sdk.NotFound("instance", id)
		}
		return container.InspectResponse{}, engineErr(err)
	}
	c := ins.Container
	if c.Config == nil || c.Config.Labels[labelRuntime] != cfg.id || c.Config.Labels[labelKind] != kindInstance {
		return container.InspectResponse{}, sdk.NotFound("instance", id)
	}
	return c, nil
}

// DeleteInstance removes the container (killing it) and, unless
// keep_volume, its volumes. A missing instance is deleted already.
func (p *Provider) DeleteInstance(ctx context.Context, req *providerv1.DeleteInstanceRequest) (*providerv1.DeleteInstanceResponse, error) {
	id := req.GetInstanceId()
	cfg, c, err := p.instanceCall(ctx, req.GetRuntime(), id)
	if status.Code(err) == codes.NotFound {
		return &providerv1.DeleteInstanceResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if c.State.Running {
		// A chance for the app's processes to stop cleanly (the drone as
		// init passes SIGTERM on), bounded.
		t := int(p.stopGrace / time.Second)
		_, _ = cfg.c.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &t})
	}
	if _, err := cfg.c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && status.Code(engineErr(err)) != codes.NotFound {
		return nil, engineErr(err)
	}
	vol := c.Config.Labels[labelVolume]
	if req.GetKeepVolume() {
		p.log.Info("container removed, volume kept", "instance_id", id, "volume_id", vol)
	} else if vol != "" {
		if err := p.removeVolume(ctx, cfg, vol); err != nil {
			return nil, err
		}
		p.log.Info("container and volume removed", "instance_id", id, "volume_id", vol)
	}
	return &providerv1.DeleteInstanceResponse{}, nil
}

// StopInstance stops the container, recording that it was on purpose.
func (p *Provider) StopInstance(ctx context.Context, req *providerv1.StopInstanceRequest) (*providerv1.Instance, error) {
	id := req.GetInstanceId()
	cfg, c, err := p.instanceCall(ctx, req.GetRuntime(), id)
	if err != nil {
		return nil, err
	}
	st, err := readState(ctx, cfg, c)
	if err != nil {
		return nil, err
	}
	if !st.Stopped {
		st.Stopped = true
		if err := p.writeFiles(ctx, cfg, id, st, nil); err != nil {
			return nil, err
		}
	}
	t := int(p.stopGrace / time.Second)
	if req.GetForce() {
		t = 0
	}
	if _, err := cfg.c.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &t}); err != nil {
		return nil, engineErr(err)
	}
	return p.describe(ctx, cfg, id, false)
}

// StartInstance starts a stopped or lost container; a running one is left
// as it is.
func (p *Provider) StartInstance(ctx context.Context, req *providerv1.StartInstanceRequest) (*providerv1.Instance, error) {
	id := req.GetInstanceId()
	cfg, c, err := p.instanceCall(ctx, req.GetRuntime(), id)
	if err != nil {
		return nil, err
	}
	if c.State.Running {
		return p.describe(ctx, cfg, id, false)
	}
	st, err := readState(ctx, cfg, c)
	if err != nil {
		return nil, err
	}
	if st.Stopped {
		st.Stopped = false
		if err := p.writeFiles(ctx, cfg, id, st, nil); err != nil {
			return nil, err
		}
	}
	return p.start(ctx, cfg, id, &st)
}

// ResizeInstance changes the container's limits, live. The volume size is
// recorded (Docker's local volumes have none to enforce) and never
// shrinks.
func (p *Provider) ResizeInstance(ctx context.Context, req *providerv1.ResizeInstanceRequest) (*providerv1.Instance, error) {
	if req.GetCpu() < 0 || req.GetMemoryMib() < 0 || req.GetVolumeGib() < 0 {
		return nil, status.Error(codes.InvalidArgument, "cpu, memory_mib and volume_gib may not be negative (0 keeps the current value)")
	}
	id := req.GetInstanceId()
	cfg, c, err := p.instanceCall(ctx, req.GetRuntime(), id)
	if err != nil {
		return nil, err
	}
	st, err := readState(ctx, cfg, c)
	if err != nil {
		return nil, err
	}
	if v := req.GetVolumeGib(); v != 0 && v < st.VolumeGiB {
		return nil, status.Errorf(codes.InvalidArgument, "volume_gib %d is below the volume's %d GiB: a volume never shrinks", v, st.VolumeGiB)
	}
	next := st
	if v := req.GetCpu(); v != 0 {
		next.CPU = v
	}
	if v := req.GetMemoryMib(); v != 0 {
		if v < 6 {
			return nil, status.Errorf(codes.InvalidArgument, "memory_mib %d: Docker needs at least 6 MiB", v)
		}
		next.MemoryMiB = v
	}
	if v := req.GetVolumeGib(); v != 0 {
		next.VolumeGiB = v
	}
	if next.CPU != st.CPU || next.MemoryMiB != st.MemoryMiB {
		res := p.resources(ctx, cfg, next.CPU, next.MemoryMiB)
		if _, err := cfg.c.ContainerUpdate(ctx, id, client.ContainerUpdateOptions{Resources: &res}); err != nil {
			return nil, engineErr(err)
		}
	}
	if next != st {
		if err := p.writeFiles(ctx, cfg, id, next, nil); err != nil {
			return nil, err
		}
	}
	return p.describe(ctx, cfg, id, false)
}
