package local

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/atomicfile"
)

// probeDrone is an agent that tries what a hostile cluster would, and logs
// what it got: its identity, a secret of the provider's user, another
// instance's files, a signal to the provider's process. It then detaches a
// daemon (one that sheds its environment, with PROBE_SHED_ENV), as an app
// could, and sleeps.
const probeDrone = `#!/bin/sh
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
echo "home=$HOME tmp=$TMPDIR"
echo "secret: $(cat "$PROBE_SECRET" 2>&1)"
echo "other: $(cat "$PROBE_OTHER" 2>&1)"
echo "environ: $(cat /proc/$PROBE_PID/environ 2>&1 | head -c 200)"
kill -0 $PROBE_PID 2>/dev/null && echo "signal: delivered" || echo "signal: refused"
echo mine > "$HANGAR_ROOT/written" && echo "own dir: writable"
if [ -n "$PROBE_SHED_ENV" ]; then
	env -i setsid sleep 1000 </dev/null >/dev/null 2>&1 &
else
	setsid sleep 1000 </dev/null >/dev/null 2>&1 &
fi
echo "probe done"
exec sleep 1000
`

// probeRuntime returns a runtime running probeDrone, a secret file the
// provider's user can read (standing for pilot's admin.token) and the
// environment the probe needs. The provider passes no environment of its
// own to instances, so the probe's settings go through its bin_dir.
func probeRuntime(t *testing.T) (rt *providerv1.Runtime, secret string) {
	t.Helper()
	priv := filepath.Join(openDir(t), "pilot")
	if err := os.Mkdir(priv, 0o700); err != nil {
		t.Fatal(err)
	}
	secret = filepath.Join(priv, "admin.token")
	if err := os.WriteFile(secret, []byte("hgt_top-secret-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	return newRuntime(t, writeBinDir(t, probeDrone, fakeFrontgate)), secret
}

// withProbeEnv makes the probe's drone a wrapper that sets the targets.
func withProbeEnv(t *testing.T, rt *providerv1.Runtime, secret, other string, shedEnv bool) {
	t.Helper()
	bin := rt.Config[keyBinDir]
	if err := os.Rename(filepath.Join(bin, droneBinary), filepath.Join(bin, "probe")); err != nil {
		t.Fatal(err)
	}
	shed := ""
	if shedEnv {
		shed = "PROBE_SHED_ENV=1 "
	}
	wrapper := "#!/bin/sh\n" + shed + "PROBE_SECRET=" + secret + " PROBE_OTHER=" + other + " PROBE_PID=" + strconv.Itoa(os.Getpid()) +
		" exec " + filepath.Join(bin, "probe") + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, droneBinary), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestInstancesRunAsUsersOfTheirOwn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("instances get users of their own when the provider runs as root")
	}
	rt, secret := probeRuntime(t)
	root := rt.Config[keyRootDir]
	p := newProvider(t, Config{})
	if p.iso != isolationUser {
		t.Fatalf("isolation as root = %v, want users", p.iso)
	}
	n := mustNetwork(t, p, rt, "n")
	// The first instance is the victim: the second tries to read its
	// user data (which carries its join token).
	victim := mustRun(t, p, rt, n.GetId(), "victim", "frontgate")
	victimUD := filepath.Join(root, "instances", victim.GetId(), userDataFile)
	withProbeEnv(t, rt, secret, victimUD, true)
	probe := mustRun(t, p, rt, n.GetId(), "probe", "drone")
	dir := filepath.Join(root, "instances", probe.GetId())
	log := waitLog(t, dir, "probe done")

	st := readState(t, rt)
	uv, up := st.Instances[victim.GetId()].UID, st.Instances[probe.GetId()].UID
	if uv < uidBase || up < uidBase || uv == up {
		t.Fatalf("instance uids %d and %d: want two distinct uids from %d", uv, up, uidBase)
	}
	want := "uid=" + strconv.Itoa(int(up)) + " gid=" + strconv.Itoa(int(up)) + " groups=" + strconv.Itoa(int(up)) + "\n"
	for _, w := range []string{want, "home=" + dir + "/home tmp=" + dir + "/tmp", "signal: refused", "own dir: writable"} {
		if !strings.Contains(log, w) {
			t.Errorf("probe log lacks %q:\n%s", w, log)
		}
	}
	for _, leak := range []string{"top-secret", "node_id", "HANGAR_INSTANCE_ID"} {
		if strings.Contains(log, leak) {
			t.Errorf("the instance read %q:\n%s", leak, log)
		}
	}
	if strings.Count(log, "Permission denied") < 3 {
		t.Errorf("want the secret, the other instance's file and the provider's environ refused with Permission denied:\n%s", log)
	}
	for _, d := range []string{dir, filepath.Join(dir, dataDir), filepath.Join(dir, rootDir), filepath.Join(dir, userDataFile)} {
		fi, err := os.Lstat(d)
		if err != nil {
			t.Fatal(err)
		}
		if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != up || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: owner %d mode %v, want %d and no access for others", d, owner, fi.Mode().Perm(), up)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "instances")); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("instances/: mode %v (%v), want 0711: traversable, not listable", fi.Mode().Perm(), err)
	}

	// The daemon shed HANGAR_INSTANCE_ID; its user still gives it away.
	waitFor(t, 5*time.Second, "the probe's processes", func() bool { return len(processesWithUID(up)) == 2 })
	mustDelete(t, p, rt, probe.GetId())
	if pids := processesWithUID(up); len(pids) != 0 {
		t.Errorf("processes %v of the deleted instance's user survive", pids)
	}
	if _, err := os.Stat(filepath.Join(p.uids.dir, strconv.Itoa(int(up)))); !os.IsNotExist(err) {
		t.Errorf("the deleted instance's uid is still claimed: %v", err)
	}
	mustDelete(t, p, rt, victim.GetId())
}

func TestUnreachableRootDirIsExplained(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only instances with users of their own need to traverse root_dir's parents")
	}
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	closed := filepath.Join(openDir(t), "home")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	rt.Config[keyRootDir] = filepath.Join(closed, "runtime")
	p := newProvider(t, Config{})
	_, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: rt})
	wantCode(t, err, codes.FailedPrecondition, "runtime.config.root_dir")
	wantCode(t, err, codes.FailedPrecondition, "chmod o+x "+closed)
	if _, statErr := os.Stat(rt.Config[keyRootDir]); !os.IsNotExist(statErr) {
		t.Errorf("root_dir was created although refused: %v", statErr)
	}
	// The same check stops RunInstance before anything is recorded.
	n, err := p.CreateNetwork(t.Context(), &providerv1.CreateNetworkRequest{Runtime: rt, IdempotencyToken: "n"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.RunInstance(t.Context(), runReq(rt, n.GetId(), "i", "drone"))
	wantCode(t, err, codes.FailedPrecondition, "chmod o+x "+closed)
	if got := readState(t, rt).Instances; len(got) != 0 {
		t.Errorf("refused RunInstance recorded %v", got)
	}
}

func TestLandlockConfinesInstances(t *testing.T) {
	abi := landlockABI()
	if abi < 1 {
		t.Skip("Landlock is not available in this kernel")
	}
	rt, secret := probeRuntime(t)
	root := rt.Config[keyRootDir]
	p := newProvider(t, Config{})
	// What a provider not running as root does. Landlock binds root too,
	// so this runs the same here.
	p.iso = isolationLandlock
	n := mustNetwork(t, p, rt, "n")
	victim := mustRun(t, p, rt, n.GetId(), "victim", "frontgate")
	withProbeEnv(t, rt, secret, filepath.Join(root, "instances", victim.GetId(), userDataFile), false)
	probe := mustRun(t, p, rt, n.GetId(), "probe", "drone")
	dir := filepath.Join(root, "instances", probe.GetId())
	log := waitLog(t, dir, "probe done")

	if !strings.Contains(log, "own dir: writable") {
		t.Errorf("the instance cannot write its own directory:\n%s", log)
	}
	for _, leak := range []string{"top-secret", "node_id", "HANGAR_INSTANCE_ID"} {
		if strings.Contains(log, leak) {
			t.Errorf("the confined instance read %q:\n%s", leak, log)
		}
	}
	// Root keeps CAP_SYS_PTRACE under Landlock, so the provider's environ
	// is refused only to a provider's user without it: see
	// TestLauncherConfinesUnprivilegedInstances.
	if strings.Count(log, "Permission denied") < 2 {
		t.Errorf("want the secret and the other instance's file refused:\n%s", log)
	}
	if abi >= 6 && !strings.Contains(log, "signal: refused") {
		t.Errorf("with Landlock ABI %d the instance could signal the provider:\n%s", abi, log)
	}
	waitFor(t, 5*time.Second, "the probe and its daemon", func() bool { return len(instanceProcs(probe.GetId())) == 2 })
	for _, in := range []*providerv1.Instance{probe, victim} {
		mustDelete(t, p, rt, in.GetId())
	}
}

func TestWithoutIsolationNoInstanceStarts(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	p.iso = isolationNone
	_, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: rt})
	wantCode(t, err, codes.FailedPrecondition, "Landlock")
	n := mustNetwork(t, p, rt, "n")
	_, err = p.RunInstance(t.Context(), runReq(rt, n.GetId(), "i", "drone"))
	wantCode(t, err, codes.FailedPrecondition, "root")
	wantCode(t, err, codes.FailedPrecondition, "Landlock")
	list, lerr := p.ListInstances(t.Context(), &providerv1.ListInstancesRequest{Runtime: rt})
	if lerr != nil || len(list.GetInstances()) != 0 {
		t.Errorf("after the refusal: %v, %v; want no instance", list.GetInstances(), lerr)
	}
	if ents, _ := os.ReadDir(filepath.Join(rt.Config[keyRootDir], "instances")); len(ents) != 0 {
		t.Errorf("instance directories left: %v", ents)
	}
}

func TestClaimsDirectory(t *testing.T) {
	t.Run("default is the user's own", func(t *testing.T) {
		for _, tt := range []struct {
			euid int
			xdg  string
			want string
		}{
			{0, "/run/user/0", "/run/hangar/local-ranges"},
			{1000, "/run/user/1000", "/run/user/1000/hangar-local-ranges"},
			{1000, "", filepath.Join(os.TempDir(), "hangar-local-ranges-1000")},
			{1000, "relative", filepath.Join(os.TempDir(), "hangar-local-ranges-1000")},
		} {
			if got := defaultRangesDir(tt.euid, tt.xdg); got != tt.want {
				t.Errorf("defaultRangesDir(%d, %q) = %s, want %s", tt.euid, tt.xdg, got, tt.want)
			}
		}
	})

	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	ranges := rt.Config[keyRangesDir]
	p := newProvider(t, Config{})
	t.Run("created 0700", func(t *testing.T) {
		if _, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: rt}); err != nil {
			t.Fatal(err)
		}
		mustNetwork(t, p, rt, "n")
		fi, err := os.Stat(ranges)
		if err != nil || fi.Mode().Perm() != 0o700 || fi.Mode()&os.ModeSticky != 0 {
			t.Fatalf("claims dir %v (%v), want mode 0700", fi.Mode(), err)
		}
		claims, _ := filepath.Glob(filepath.Join(ranges, "127.*"))
		for _, c := range claims {
			if fi, err := os.Stat(c); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("claim %s mode %v (%v), want 0600", c, fi.Mode().Perm(), err)
			}
		}
	})
	t.Run("writable by others is refused", func(t *testing.T) {
		if err := os.Chmod(ranges, 0o1777); err != nil {
			t.Fatal(err)
		}
		_, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: rt})
		wantCode(t, err, codes.FailedPrecondition, ranges)
		wantCode(t, err, codes.FailedPrecondition, "other users may write")
		_, err = p.CreateNetwork(t.Context(), &providerv1.CreateNetworkRequest{Runtime: rt, IdempotencyToken: "n2"})
		wantCode(t, err, codes.FailedPrecondition, ranges)
	})
	t.Run("a link is refused", func(t *testing.T) {
		link := filepath.Join(openDir(t), "ranges-link")
		if err := os.Symlink(ranges, link); err != nil {
			t.Fatal(err)
		}
		rt.Config[keyRangesDir] = link
		_, err := p.ValidateRuntime(t.Context(), &providerv1.ValidateRuntimeRequest{Runtime: rt})
		wantCode(t, err, codes.FailedPrecondition, link)
	})
}

func TestUIDClaims(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the uid registry is root's")
	}
	r := uidRegistry{dir: filepath.Join(openDir(t), "uids")}
	root := openDir(t)
	mkInstance := func(id string) {
		if err := os.MkdirAll(filepath.Join(root, "instances", id), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mkInstance("i-a")
	mkInstance("i-b")
	a, err := r.claim(t.Context(), root, "i-a")
	if err != nil {
		t.Fatal(err)
	}
	again, err := r.claim(t.Context(), root, "i-a")
	if err != nil || again != a {
		t.Errorf("a second claim for the same instance = %d, %v; want its own %d", again, err, a)
	}
	b, err := r.claim(t.Context(), root, "i-b")
	if err != nil || b == a {
		t.Fatalf("claim for another instance = %d, %v; want a uid other than %d", b, err, a)
	}
	if fi, err := os.Stat(r.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("registry dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	// Released uids are not handed out again at once: the next comes
	// after the cursor.
	if err := r.release(t.Context(), a, root, "i-a"); err != nil {
		t.Fatal(err)
	}
	mkInstance("i-c")
	c, err := r.claim(t.Context(), root, "i-c")
	if err != nil || c == a || c == b {
		t.Errorf("after a release, claim = %d, %v; want a fresh uid (not %d or %d)", c, err, a, b)
	}
	// A claim whose instance directory is gone is taken over when the
	// cursor comes round.
	if err := os.RemoveAll(filepath.Join(root, "instances", "i-b")); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(filepath.Join(r.dir, uidCursorFile), []byte(strconv.Itoa(int(b))), 0o600); err != nil {
		t.Fatal(err)
	}
	mkInstance("i-d")
	if d, err := r.claim(t.Context(), root, "i-d"); err != nil || d != b {
		t.Errorf("claim after i-b's directory went = %d, %v; want its stale uid %d", d, err, b)
	}
	// Releasing someone else's claim does nothing.
	if err := r.release(t.Context(), c, root, "i-x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, strconv.Itoa(int(c)))); err != nil {
		t.Errorf("release by the wrong instance removed the claim: %v", err)
	}
}

// TestLauncherConfinesUnprivilegedInstances runs the launcher as a provider
// not running as root would: the provider, its secrets and every instance
// share one unprivileged user, and only Landlock keeps them apart. (The
// other tests run as root, which keeps CAP_SYS_PTRACE under Landlock.)
func TestLauncherConfinesUnprivilegedInstances(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the instances as another, unprivileged user")
	}
	abi := landlockABI()
	if abi < 1 {
		t.Skip("Landlock is not available in this kernel")
	}
	const nobody = 65534
	base := openDir(t)
	own := func(path string, mode os.FileMode) {
		t.Helper()
		if err := os.Chown(path, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(name string) string {
		t.Helper()
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		own(d, 0o700)
		return d
	}
	// The test binary is the launcher; nobody must be able to run it.
	bin := filepath.Join(base, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	launcher := filepath.Join(bin, "launcher")
	if err := os.WriteFile(launcher, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(bin, "probe")
	if err := os.WriteFile(probe, []byte(probeDrone), 0o755); err != nil {
		t.Fatal(err)
	}
	pilotData := mkdir("pilot")
	secret := filepath.Join(pilotData, "admin.token")
	if err := os.WriteFile(secret, []byte("hgt_top-secret-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	own(secret, 0o600)
	victimDir, probeDir := mkdir("victim"), mkdir("probe")
	victimFile := filepath.Join(victimDir, "key.pem")
	if err := os.WriteFile(victimFile, []byte("victim-private-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	own(victimFile, 0o600)

	start := func(dir, exe string, args, env []string, out *os.File) *os.Process {
		t.Helper()
		argv, err := launcherArgs(launcher, launchSpec{Dir: dir, Bin: bin, Exec: exe, Args: args})
		if err != nil {
			t.Fatal(err)
		}
		proc, err := os.StartProcess(launcher, argv, &os.ProcAttr{Dir: dir, Env: env, Files: []*os.File{nil, out, out},
			Sys: &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-proc.Pid, syscall.SIGKILL); _, _ = proc.Wait() })
		return proc
	}
	victim := start(victimDir, "/bin/sleep", []string{"sleep", "1000"}, []string{"VICTIM_SECRET=victim-env-secret"}, nil)
	waitFor(t, 5*time.Second, "the victim to exec sleep", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(victim.Pid) + "/comm")
		return strings.TrimSpace(string(b)) == "sleep"
	})
	logPath := filepath.Join(probeDir, agentLog)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	start(probeDir, probe, []string{probe}, []string{"PATH=/usr/bin:/bin", "HANGAR_ROOT=" + probeDir,
		"PROBE_SECRET=" + secret, "PROBE_OTHER=" + victimFile, "PROBE_PID=" + strconv.Itoa(victim.Pid)}, logf)
	log := waitLog(t, probeDir, "probe done")

	if !strings.Contains(log, "own dir: writable") {
		t.Errorf("the instance cannot write its own directory:\n%s", log)
	}
	for _, leak := range []string{"top-secret", "victim-private-key", "victim-env-secret"} {
		if strings.Contains(log, leak) {
			t.Errorf("a confined instance read %q of its own user:\n%s", leak, log)
		}
	}
	if strings.Count(log, "Permission denied") < 3 {
		t.Errorf("want pilot's secret, the other instance's key and its environ refused:\n%s", log)
	}
	if abi >= 6 && !strings.Contains(log, "signal: refused") {
		t.Errorf("an instance could signal another of the same user:\n%s", log)
	}
}
