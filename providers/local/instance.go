package local

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Environment variables every instance process gets.
const (
	EnvInstanceID = "HANGAR_INSTANCE_ID"
	EnvAddress    = "HANGAR_ADDRESS"
	EnvRoot       = "HANGAR_ROOT"
)

// Files and directories inside an instance's directory.
const (
	userDataFile = "userdata.json"
	dataDir      = "data"
	rootDir      = "root"
	agentLog     = "agent.log"
)

// RunInstance starts an agent process for the instance; the same
// idempotency_token returns the same instance and never starts a second
// process. Image "frontgate" runs a frontgate; any other image, including
// none (an app that names no image), runs a drone.
func (p *Provider) RunInstance(ctx context.Context, req *providerv1.RunInstanceRequest) (*providerv1.Instance, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	token := req.GetIdempotencyToken()
	for _, f := range []struct{ name, v string }{
		{"idempotency_token", token},
		{"network_id", req.GetNetworkId()},
	} {
		if err := required(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if err := checkSizes(req.GetCpu(), req.GetMemoryMib(), req.GetVolumeGib(), "the provider's default"); err != nil {
		return nil, err
	}

	var out *providerv1.Instance
	err = p.update(ctx, cfg, func(t *tx) error {
		rec := t.byToken(token)
		interrupted := rec != nil
		if rec != nil {
			if rec.NetworkID != req.GetNetworkId() || rec.Image != req.GetImage() || rec.Name != req.GetName() || !sameVolume(rec, req.GetVolumeId()) {
				return status.Errorf(codes.InvalidArgument,
					"idempotency_token %q was already used for instance %s (network_id %s, image %q, name %q, volume_id %q); use a new token for a different instance",
					token, rec.ID, rec.NetworkID, rec.Image, rec.Name, reusedVolume(rec))
			}
		} else {
			if ts, ok := t.st.Deleted[instanceTokenKey(token)]; ok {
				return status.Errorf(codes.FailedPrecondition,
					"idempotency_token %q created instance %s, which has been deleted; use a new token", token, ts.ID)
			}
			// Checked before anything is recorded, so a bad bin_dir, or a
			// host where instances cannot be isolated, leaves nothing
			// behind.
			if _, err := cfg.binary(binaryFor(req.GetImage())); err != nil {
				return err
			}
			if cfg.images != "" && req.GetImage() != frontgateImage {
				if _, err := cfg.imageDir(req.GetImage()); err != nil {
					return err
				}
			}
			if err := p.checkIsolation(cfg); err != nil {
				return err
			}
			var err error
			if rec, err = p.createRecord(t, req); err != nil {
				return err
			}
		}
		switch {
		case rec.Deleting:
			return status.Errorf(codes.FailedPrecondition, "instance %s of idempotency_token %q is being deleted", rec.ID, token)
		case rec.PID == 0:
			// A new record, or one whose start was interrupted (plugin
			// killed): in the latter case the process may be running.
			bin, err := cfg.binary(binaryFor(rec.Image))
			if err != nil {
				return err
			}
			if err := p.start(ctx, t, rec, bin, req.GetUserData(), interrupted); err != nil {
				return err
			}
		case rec.state() == providerv1.InstanceState_INSTANCE_STATE_LOST:
			// The token's instance died (killed, or the machine
			// restarted): the same token converges it to running.
			if err := p.relaunch(ctx, t, rec); err != nil {
				return err
			}
		}
		out = rec.proto()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sameVolume reports whether a RunInstance asking for volume_id (empty:
// a new volume) is the one that created rec.
func sameVolume(rec *instance, volumeID string) bool {
	return reusedVolume(rec) == volumeID
}

// reusedVolume is the volume_id rec's RunInstance asked for.
func reusedVolume(rec *instance) string {
	if rec.ReusedVolume {
		return rec.VolumeID
	}
	return ""
}

func (t *tx) byToken(token string) *instance {
	for _, in := range t.st.Instances {
		if in.Token == token {
			return in
		}
	}
	return nil
}

// createRecord allocates an id and an address and persists the instance with
// PID 0 before any process exists, so that a crash between here and the
// start leaves a record the retry finds.
func (p *Provider) createRecord(t *tx, req *providerv1.RunInstanceRequest) (*instance, error) {
	n, ok := t.st.Networks[req.GetNetworkId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "network %s not found", req.GetNetworkId())
	}
	addr, err := t.freeAddress(n)
	if err != nil {
		return nil, err
	}
	volID, volGiB, err := t.volumeFor(req)
	if err != nil {
		return nil, err
	}
	id, err := newID("i-", func(id string) bool {
		_, ok := t.st.Instances[id]
		_, statErr := os.Lstat(t.cfg.instanceDir(id))
		return ok || statErr == nil
	})
	if err != nil {
		return nil, err
	}
	rec := &instance{
		ID:        id,
		Token:     req.GetIdempotencyToken(),
		NetworkID: n.ID,
		Name:      req.GetName(),
		Address:   addr,
		Image:     req.GetImage(),
		Labels:    maps.Clone(req.GetLabels()),
		CPU:       req.GetCpu(),
		MemoryMiB: req.GetMemoryMib(),
		VolumeGiB: volGiB,
		Created:   time.Now().UTC(),
		VolumeID:  volID,
		// The detached volume becomes the instance's in the same save:
		// its directory moves into place when the instance first starts.
		ReusedVolume: req.GetVolumeId() != "",
	}
	t.st.Instances[id] = rec
	vol := t.st.Volumes[volID]
	delete(t.st.Volumes, volID)
	if err := t.save(); err != nil {
		delete(t.st.Instances, id)
		if vol != nil {
			t.st.Volumes[volID] = vol
		}
		return nil, err
	}
	return rec, nil
}

// freeAddress returns the lowest free host address of n (.2 to .254 of its
// first /24 block, then .1 to .254 of the others; the first .1 is
// reserved, as a gateway would be on a real network).
func (t *tx) freeAddress(n *network) (string, error) {
	used := map[string]bool{}
	for _, in := range t.st.Instances {
		if in.NetworkID == n.ID {
			used[in.Address] = true
		}
	}
	for _, r := range t.st.Reserved {
		if r.Network == n.ID {
			used[r.Address] = true
		}
	}
	bs, err := blocks(n.CIDR)
	if err != nil {
		return "", internal("%v", err)
	}
	for i, base := range bs {
		for h := 1; h <= 254; h++ {
			if i == 0 && h == 1 {
				continue
			}
			a := fmt.Sprintf("%s.%d", base, h)
			if !used[a] {
				return a, nil
			}
		}
	}
	return "", sdk.QuotaExceeded(fmt.Sprintf("addresses of network %s (%s)", n.ID, n.CIDR), strconv.Itoa(len(bs)*254-1))
}

// start spawns the instance's process and records its identity. After an
// interrupted start the process may already run: then it is adopted (the
// oldest process carrying the instance id is the agent; the others are its
// descendants).
func (p *Provider) start(ctx context.Context, t *tx, rec *instance, bin string, userData []byte, interrupted bool) error {
	if interrupted {
		if pids := p.instanceProcesses(rec); len(pids) > 0 {
			if _, start, err := procStat(pids[0]); err == nil {
				rec.PID, rec.StartTime = pids[0], start
				p.log.Info("instance process adopted", "instance", rec.ID, "pid", rec.PID)
				return t.save()
			}
		}
	}
	fail := func(err error) error {
		if rec.ReusedVolume {
			// The volume was someone's data: it goes back to the
			// detached volumes, wherever the start left it.
			if verr := t.detachVolume(rec); verr != nil {
				p.log.Error("give back the volume of a failed instance", "instance", rec.ID, "volume", rec.VolumeID, "error", verr)
				return err
			}
		}
		delete(t.st.Instances, rec.ID)
		if serr := t.save(); serr != nil {
			p.log.Error("forget failed instance", "instance", rec.ID, "error", serr)
		}
		_ = os.RemoveAll(t.cfg.instanceDir(rec.ID))
		if rec.UID != 0 {
			if err := p.uids.release(ctx, rec.UID, t.cfg.root, rec.ID); err != nil {
				p.log.Warn("release instance user", "instance", rec.ID, "uid", rec.UID, "error", err)
			}
		}
		return err
	}
	if userData == nil {
		// nil tells spawn to restart with the user data on disk.
		userData = []byte{}
	}
	proc, start, err := p.spawn(ctx, t, rec, bin, userData)
	if err != nil {
		return fail(err)
	}
	rec.PID, rec.StartTime = proc.Pid, start
	p.reaper.add(proc)
	if err := t.save(); err != nil {
		// Without a record nobody would ever stop it.
		_ = syscall.Kill(proc.Pid, syscall.SIGKILL)
		return fail(err)
	}
	p.log.Info("instance started", "instance", rec.ID, "network", rec.NetworkID,
		"address", rec.Address, "image", rec.Image, "pid", rec.PID, "uid", rec.UID, "isolation", p.iso.String())
	return nil
}

// relaunch starts the agent of an instance that ran before, keeping its
// directory, address, user and whatever of it still runs.
func (p *Provider) relaunch(ctx context.Context, t *tx, rec *instance) error {
	bin, err := t.cfg.binary(binaryFor(rec.Image))
	if err != nil {
		return err
	}
	// What the dead agent started (the app's daemons, a command under
	// way) keeps running: an agent's death is not the app's, and the new
	// agent picks its commands' results up. With nothing left, this is a
	// boot, and the caller learns that the app must be started again.
	booted := len(p.instanceProcesses(rec)) == 0
	proc, start, err := p.spawn(ctx, t, rec, bin, nil)
	if err != nil {
		return err
	}
	rec.PID, rec.StartTime, rec.Stopped = proc.Pid, start, false
	p.reaper.add(proc)
	if err := t.save(); err != nil {
		_ = syscall.Kill(proc.Pid, syscall.SIGKILL)
		return err
	}
	rec.booted = booted
	p.log.Info("instance restarted", "instance", rec.ID, "address", rec.Address, "pid", rec.PID, "booted", booted)
	return nil
}

// StopInstance stops every process of the instance and keeps it stopped:
// its directory, address and user stay, and only StartInstance runs it
// again.
func (p *Provider) StopInstance(ctx context.Context, req *providerv1.StopInstanceRequest) (*providerv1.Instance, error) {
	id := req.GetInstanceId()
	cfg, err := p.runtimeWith(req.GetRuntime(), "instance_id", id)
	if err != nil {
		return nil, err
	}
	var rec instance
	err = p.update(ctx, cfg, func(t *tx) error {
		in, ok := t.st.Instances[id]
		if !ok {
			return status.Errorf(codes.NotFound, "instance %s not found", id)
		}
		// Recorded first: a crash mid-stop leaves an instance that no
		// retried RunInstance brings back.
		in.Stopped = true
		rec = *in
		return t.save()
	})
	if err != nil {
		return nil, err
	}
	find := func() []int { return p.allProcesses(&rec) }
	grace := p.killGrace
	if req.GetForce() {
		grace = 0
	}
	if err := terminate(ctx, find, grace); err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "stop instance "+id)
		}
		return nil, internal("stop instance %s: %v", id, err)
	}
	p.log.Info("instance stopped", "instance", id, "address", rec.Address)
	return rec.proto(), nil
}

// StartInstance runs a stopped or lost instance again, with its id,
// address, user and data.
func (p *Provider) StartInstance(ctx context.Context, req *providerv1.StartInstanceRequest) (*providerv1.Instance, error) {
	id := req.GetInstanceId()
	cfg, err := p.runtimeWith(req.GetRuntime(), "instance_id", id)
	if err != nil {
		return nil, err
	}
	var out *providerv1.Instance
	err = p.update(ctx, cfg, func(t *tx) error {
		in, ok := t.st.Instances[id]
		if !ok {
			return status.Errorf(codes.NotFound, "instance %s not found", id)
		}
		if in.Deleting {
			return status.Errorf(codes.FailedPrecondition, "instance %s is being deleted", id)
		}
		if in.state() != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
			if err := p.relaunch(ctx, t, in); err != nil {
				return err
			}
		}
		out = in.proto()
		return nil
	})
	return out, err
}

// Directories of an instance's own, besides data/ and root/: its HOME and
// TMPDIR, so that what an app keeps there stays in the instance's
// directory rather than in a directory other instances share.
const (
	homeDir = "home"
	tmpDir  = "tmp"
)

// spawn prepares the instance directory and starts the agent in its own
// session, so that it outlives the plugin and pilot and gets none of their
// terminal's signals. The agent never runs with the provider's privileges:
// as root, it runs as a user of its own that owns its directory; otherwise
// through the launcher, confined by Landlock.
//
// userData nil restarts an instance that ran before (StartInstance, or a
// lost one brought back): its directory, user and user data are kept, and
// whatever its own processes may have planted in the directory (links for
// root to follow) is removed first.
func (p *Provider) spawn(ctx context.Context, t *tx, rec *instance, bin string, userData []byte) (*os.Process, uint64, error) {
	cfg := t.cfg
	dir := cfg.instanceDir(rec.ID)
	var cred *syscall.Credential
	restart := userData == nil
	if restart {
		var err error
		if userData, err = readOwnFile(filepath.Join(dir, userDataFile)); err != nil {
			return nil, 0, internal("restart instance %s: read its user data: %v", rec.ID, err)
		}
		if err := clearLinks(dir); err != nil {
			return nil, 0, internal("restart instance %s: %v", rec.ID, err)
		}
	}
	if p.iso == isolationUser && !restart {
		// A former attempt's process may have left links in the
		// directory for root to follow: start from nothing (but the
		// data of a reused volume, already moved in). Nothing of the
		// instance runs (start looked for its processes).
		if err := removeAllBut(dir, keepIf(rec.ReusedVolume, rootDir)); err != nil {
			return nil, 0, internal("run instance %s: %v", rec.ID, err)
		}
		if err := clearLinks(dir); err != nil {
			return nil, 0, internal("run instance %s: %v", rec.ID, err)
		}
	}
	if !restart && rec.ReusedVolume {
		if err := attachVolume(cfg, rec); err != nil {
			return nil, 0, internal("run instance %s: attach volume %s: %v", rec.ID, rec.VolumeID, err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, dataDir), filepath.Join(dir, rootDir), filepath.Join(dir, homeDir), filepath.Join(dir, tmpDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, 0, internal("run instance %s: %v", rec.ID, err)
		}
	}
	// A new instance's root starts as its image (images.go); a reused
	// volume's root is the node's data as it was left.
	if !restart && !rec.ReusedVolume && cfg.images != "" && rec.Image != frontgateImage {
		img, err := cfg.imageDir(rec.Image)
		if err != nil {
			return nil, 0, err
		}
		if err := seedRoot(img, filepath.Join(dir, rootDir)); err != nil {
			return nil, 0, internal("run instance %s: seed its root from image %s: %v", rec.ID, rec.Image, err)
		}
	}
	if p.iso == isolationUser {
		// Claimed once the directory exists: a claim whose directory is
		// missing counts as stale (see claimStale).
		uid, err := p.uids.claim(ctx, cfg.root, rec.ID)
		if err != nil {
			return nil, 0, err
		}
		if rec.UID != uid {
			rec.UID = uid
			if err := t.save(); err != nil {
				return nil, 0, err
			}
		}
		cred = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
	}
	ud := filepath.Join(dir, userDataFile)
	_ = os.Remove(ud) // a restart writes it anew, never through a link
	if err := os.WriteFile(ud, userData, 0o600); err != nil {
		return nil, 0, internal("run instance %s: write user data: %v", rec.ID, err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, agentLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, 0, internal("run instance %s: open %s: %v", rec.ID, agentLog, err)
	}
	defer logf.Close()
	if cred != nil {
		if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, 0, internal("run instance %s: give its directory to its user %d: %v", rec.ID, cred.Uid, err)
		}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, 0, internal("run instance %s: %v", rec.ID, err)
	}
	defer devnull.Close()

	exe, argv := bin, []string{bin, "--userdata", ud, "--data-dir", filepath.Join(dir, dataDir)}
	if rec.Image == frontgateImage && cfg.fgMetrics != 0 {
		argv = append(argv, "--metrics-listen", net.JoinHostPort(rec.Address, strconv.Itoa(cfg.fgMetrics)))
	}
	if p.iso == isolationLandlock {
		exe = p.launcher
		if argv, err = launcherArgs(p.launcher, launchSpec{Dir: dir, Bin: cfg.bin, Exec: bin, Args: argv}); err != nil {
			return nil, 0, internal("run instance %s: %v", rec.ID, err)
		}
	}
	proc, err := os.StartProcess(exe, argv,
		&os.ProcAttr{
			Dir:   dir,
			Env:   instanceEnv(os.Environ(), cfg, rec),
			Files: []*os.File{devnull, logf, logf},
			Sys:   &syscall.SysProcAttr{Setsid: true, Credential: cred},
		})
	if err != nil {
		return nil, 0, internal("run instance %s: start %s: %v", rec.ID, bin, err)
	}
	// Read before the reaper knows the pid: until then a quick exit leaves
	// a zombie whose stat is still readable.
	_, start, err := procStat(proc.Pid)
	if err != nil {
		_ = proc.Kill()
		_, _ = proc.Wait()
		return nil, 0, internal("run instance %s: %v", rec.ID, err)
	}
	return proc, start, nil
}

// readOwnFile reads a regular file, refusing a link.
func readOwnFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// clearLinks removes the entries of an instance's directory that root
// writes or creates but that are not what they should be (a link, or a
// file where a directory belongs): an instance owns its directory and may
// have put anything there.
func clearLinks(dir string) error {
	for _, name := range []string{dataDir, rootDir, homeDir, tmpDir, agentLog, userDataFile} {
		path := filepath.Join(dir, name)
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		wantDir := name != agentLog && name != userDataFile
		if fi.Mode()&fs.ModeSymlink != 0 || fi.IsDir() != wantDir {
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("remove %s: %w", path, err)
			}
		}
	}
	return nil
}

// chownTree gives dir and everything in it to uid:gid, without following
// links.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// instanceEnv is what an instance's agent gets: the instance's variables,
// its own HOME and TMPDIR, PATH with bin_dir first, and of the plugin's
// environment (which is pilot's) only the locale and time zone.
func instanceEnv(base []string, cfg runtimeConfig, rec *instance) []string {
	path := cfg.bin
	env := make([]string, 0, 8)
	for _, kv := range base {
		if k, v, _ := strings.Cut(kv, "="); k == "PATH" {
			if v != "" {
				path += ":" + v
			}
			continue
		}
		if passedEnv(kv) {
			env = append(env, kv)
		}
	}
	dir := cfg.instanceDir(rec.ID)
	return append(env,
		EnvInstanceID+"="+rec.ID,
		EnvAddress+"="+rec.Address,
		EnvRoot+"="+filepath.Join(dir, rootDir),
		"HOME="+filepath.Join(dir, homeDir),
		"TMPDIR="+filepath.Join(dir, tmpDir),
		"PATH="+path,
	)
}

// instanceProcesses lists the instance's live processes, oldest first: by
// its id in their environment and, for an instance with a user of its own,
// by that user (which it cannot shed, unlike its environment).
func (p *Provider) instanceProcesses(rec *instance) []int {
	pids := processesWithEnv(EnvInstanceID + "=" + rec.ID)
	if rec.UID != 0 {
		for _, pid := range processesWithUID(rec.UID) {
			if !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
		sortByStart(pids)
	}
	return pids
}

// checkSizes refuses a negative cpu, memory_mib or volume_gib; zero means
// zeroMeans.
func checkSizes(cpu, memoryMiB, volumeGiB int32, zeroMeans string) error {
	for _, f := range []struct {
		name string
		v    int32
	}{{"cpu", cpu}, {"memory_mib", memoryMiB}, {"volume_gib", volumeGiB}} {
		if f.v < 0 {
			return status.Errorf(codes.InvalidArgument, "%s must be 0 (%s) or more, got %d", f.name, zeroMeans, f.v)
		}
	}
	return nil
}

// runtimeWith parses the runtime of a call acting on the object whose id
// (field) is required.
func (p *Provider) runtimeWith(rt *providerv1.Runtime, field, id string) (runtimeConfig, error) {
	if err := required(field, id); err != nil {
		return runtimeConfig{}, err
	}
	return p.parseRuntime(rt)
}

// allProcesses is instanceProcesses with the recorded agent, which counts
// even when its environ is unreadable (it changed user and the plugin is
// not root).
func (p *Provider) allProcesses(rec *instance) []int {
	pids := p.instanceProcesses(rec)
	if alive(rec.PID, rec.StartTime) && !slices.Contains(pids, rec.PID) {
		pids = append(pids, rec.PID)
	}
	return pids
}

func (in *instance) state() providerv1.InstanceState {
	switch {
	case in.Stopped:
		return providerv1.InstanceState_INSTANCE_STATE_STOPPED
	case in.PID == 0:
		return providerv1.InstanceState_INSTANCE_STATE_PENDING
	case alive(in.PID, in.StartTime):
		return providerv1.InstanceState_INSTANCE_STATE_RUNNING
	default:
		return providerv1.InstanceState_INSTANCE_STATE_LOST
	}
}

func (in *instance) proto() *providerv1.Instance {
	return &providerv1.Instance{
		Id:        in.ID,
		NetworkId: in.NetworkID,
		Name:      in.Name,
		Address:   in.Address,
		Image:     in.Image,
		State:     in.state(),
		Labels:    maps.Clone(in.Labels),
		Cpu:       in.CPU,
		MemoryMib: in.MemoryMiB,
		VolumeGib: in.VolumeGiB,
		VolumeId:  in.VolumeID,
		Booted:    in.booted,
	}
}

// GetInstance returns an instance, or NotFound.
func (p *Provider) GetInstance(ctx context.Context, req *providerv1.GetInstanceRequest) (*providerv1.Instance, error) {
	in, err := getRecord(ctx, p, req.GetRuntime(), "instance", req.GetInstanceId(), func(st *state, id string) (*instance, bool) {
		in, ok := st.Instances[id]
		return in, ok
	})
	if err != nil {
		return nil, err
	}
	return in.proto(), nil
}

// ListInstances lists the instances of a network, or of the whole runtime
// when network_id is empty, oldest first.
func (p *Provider) ListInstances(ctx context.Context, req *providerv1.ListInstancesRequest) (*providerv1.ListInstancesResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	netID := req.GetNetworkId()
	var recs []*instance
	err = p.update(ctx, cfg, func(t *tx) error {
		if _, ok := t.st.Networks[netID]; netID != "" && !ok {
			return status.Errorf(codes.NotFound, "network %s not found", netID)
		}
		for _, in := range t.st.Instances {
			if netID == "" || in.NetworkID == netID {
				recs = append(recs, in)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].Created.Equal(recs[j].Created) {
			return recs[i].Created.Before(recs[j].Created)
		}
		return recs[i].ID < recs[j].ID
	})
	resp := &providerv1.ListInstancesResponse{Instances: make([]*providerv1.Instance, len(recs))}
	for i, in := range recs {
		resp.Instances[i] = in.proto()
	}
	return resp, nil
}

// DeleteInstance stops every process of the instance (including daemons it
// detached), removes its directory and frees its address. A missing instance
// is not an error.
func (p *Provider) DeleteInstance(ctx context.Context, req *providerv1.DeleteInstanceRequest) (*providerv1.DeleteInstanceResponse, error) {
	id := req.GetInstanceId()
	cfg, err := p.runtimeWith(req.GetRuntime(), "instance_id", id)
	if err != nil {
		return nil, err
	}
	var rec instance
	var found bool
	err = p.update(ctx, cfg, func(t *tx) error {
		in, ok := t.st.Instances[id]
		if !ok {
			return nil
		}
		rec, found = *in, true
		if !in.Deleting {
			in.Deleting = true
			return t.save()
		}
		return nil
	})
	if err != nil || !found {
		return &providerv1.DeleteInstanceResponse{}, err
	}

	// Outside the lock: waiting out the grace period must not stall every
	// other call on this root. The address stays taken until the processes
	// are gone, so nothing new can bind it meanwhile.
	find := func() []int { return p.allProcesses(&rec) }
	if err := terminate(ctx, find, p.killGrace); err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "delete instance "+id)
		}
		return nil, internal("delete instance %s: %v", id, err)
	}

	err = p.update(ctx, cfg, func(t *tx) error {
		in, ok := t.st.Instances[id]
		if ok && req.GetKeepVolume() {
			// Before the directory goes: the volume is saved detached
			// first, so a crash in between leaves it, not the data, lost
			// to nobody.
			if err := t.detachVolume(in); err != nil {
				return internal("delete instance %s: keep its volume: %v", id, err)
			}
			rec.VolumeID = in.VolumeID
		} else if ok && in.ReusedVolume {
			// A volume attached but never moved into place (no start
			// yet) goes with the instance too.
			if err := os.RemoveAll(cfg.volumeDir(in.VolumeID)); err != nil {
				return internal("delete instance %s: remove its volume: %v", id, err)
			}
		}
		if err := os.RemoveAll(cfg.instanceDir(id)); err != nil {
			return internal("delete instance %s: remove directory: %v", id, err)
		}
		if !ok {
			return nil
		}
		delete(t.st.Instances, id)
		t.st.Deleted[instanceTokenKey(rec.Token)] = tombstone{ID: id, Deleted: time.Now().UTC()}
		return t.save()
	})
	if err != nil {
		return nil, err
	}
	if rec.UID != 0 {
		// After the directory is gone; a claim left by a crash before
		// this is stale without it and taken over.
		if err := p.uids.release(ctx, rec.UID, cfg.root, id); err != nil {
			p.log.Warn("release instance user", "instance", id, "uid", rec.UID, "error", err)
		}
	}
	p.log.Info("instance deleted", "instance", id, "network", rec.NetworkID, "address", rec.Address,
		"kept_volume", keepIf(req.GetKeepVolume(), rec.VolumeID))
	return &providerv1.DeleteInstanceResponse{}, nil
}
