package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hangarhq/hangar/api/pilotv1"
)

// fakePilotMain serves a fake pilot on --listen until SIGTERM, taking the
// flags `hangar up` passes to the real pilot.
func fakePilotMain(args []string) int {
	fs := flag.NewFlagSet("pilot", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "")
	listen := fs.String("listen", "", "")
	fs.String("http-listen", "", "")
	logFormat := fs.String("log-format", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" || *logFormat != "json" {
		fmt.Fprintf(os.Stderr, "fake pilot: bad flags %q\n", args)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	// Like pilot: the CA and the first admin's token are written at the
	// first start, before it serves.
	tlsCfg, token, err := fakeCredentials(*dataDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake pilot: %v\n", err)
		return 1
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake pilot: %v\n", err)
		return 1
	}
	srv := fakeServer(tlsCfg, token)
	newFakeState().register(srv)
	fmt.Fprintf(os.Stderr, `{"msg":"fake pilot listening","addr":%q}`+"\n", lis.Addr())
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	if err := srv.Serve(lis); err != nil {
		return 1
	}
	return 0
}

// freeAddr returns a 127.0.0.1 address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// installPilot puts a "pilot" next to a pretend hangar executable and
// returns an env that finds it there.
func installPilot(t *testing.T, target string) env {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(target, filepath.Join(dir, "pilot")); err != nil {
		t.Fatal(err)
	}
	e := testEnv(t)
	e.executable = func() (string, error) { return filepath.Join(dir, "hangar"), nil }
	return e
}

// killOnCleanup makes sure a pilot the test started does not outlive it.
func killOnCleanup(t *testing.T, dataDir string) {
	t.Cleanup(func() {
		pid, err := readPIDFile(pidPath(dataDir))
		if err != nil {
			return
		}
		if processAlive(pid) {
			_ = killProcess(pid)
			_ = pollUntil(context.Background(), 20*time.Millisecond, 5*time.Second, func() (bool, error) {
				return !processAlive(pid), nil
			})
		}
	})
}

func TestUpStartsPilotDetachedAndDownStopsIt(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakePilotEnv, "1") // inherited by the started "pilot"
	e := installPilot(t, self)
	dataDir := t.TempDir()
	killOnCleanup(t, dataDir)
	listen := freeAddr(t)
	http := freeAddr(t)

	res := runCLIEnv(t, e, "up", "--data-dir", dataDir, "--listen", listen, "--http-listen", http)
	if res.code != 0 {
		t.Fatalf("up: exit %d\nstdout:\n%s\nstderr:\n%s\nlog:\n%s", res.code, res.stdout, res.stderr, tailFile(logPath(dataDir), 0, 50))
	}
	pid, err := readPIDFile(pidPath(dataDir))
	if err != nil {
		t.Fatalf("pid file after up: %v", err)
	}
	for _, want := range []string{"pilot started (pid " + fmt.Sprint(pid), listen, logPath(dataDir), `Runtime "local" created`, "export HANGAR_PILOT=" + listen, "hangar down",
		"HANGAR_CA=" + caCertPath(dataDir), "HANGAR_TOKEN=$(cat " + adminTokenPath(dataDir) + ")"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("up output lacks %q:\n%s", want, res.stdout)
		}
	}
	if log := tailFile(logPath(dataDir), 0, 10); !strings.Contains(log, "fake pilot listening") {
		t.Errorf("pilot's stderr did not reach %s: %q", logPath(dataDir), log)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "pilot")); err != nil {
		t.Errorf("pilot data folder: %v", err)
	}
	// The detached pilot is in its own session, so a Ctrl-C in the
	// terminal that ran `hangar up` does not reach it.
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("pilot session id = %d (%v), want its own (%d)", sid, err, pid)
	}

	token, err := os.ReadFile(adminTokenPath(dataDir))
	if err != nil {
		t.Fatalf("admin token after up: %v", err)
	}
	if strings.Contains(res.stdout, strings.TrimSpace(string(token))) {
		t.Errorf("up printed the admin token:\n%s", res.stdout)
	}
	caPEM, err := os.ReadFile(caCertPath(dataDir))
	if err != nil {
		t.Fatalf("CA after up: %v", err)
	}
	conn, err := dialPilot(listen, dialSecurity{caPEM: caPEM, token: strings.TrimSpace(string(token))})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rts, err := pilotv1.NewRuntimeServiceClient(conn).ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rts.GetRuntimes()) != 1 || rts.Runtimes[0].GetId() != "local" || rts.Runtimes[0].GetProvider() != "local" || rts.Runtimes[0].GetZone() != "local" {
		t.Errorf("runtimes after up = %v, want one local/local/local", rts.GetRuntimes())
	}

	// A second up finds it running and keeps it.
	res = runCLIEnv(t, e, "up", "--data-dir", dataDir, "--listen", listen, "--http-listen", http)
	if res.code != 0 || !strings.Contains(res.stdout, "already running") || !strings.Contains(res.stdout, `Runtime "local" is ready`) {
		t.Fatalf("second up: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if got, _ := readPIDFile(pidPath(dataDir)); got != pid {
		t.Errorf("second up changed the pid file to %d, want %d", got, pid)
	}

	res = runCLIEnv(t, e, "down", "--data-dir", dataDir)
	if res.code != 0 || !strings.Contains(res.stdout, "pilot stopped") {
		t.Fatalf("down: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if processAlive(pid) {
		t.Errorf("pilot (pid %d) still runs after down", pid)
	}
	if _, err := os.Stat(pidPath(dataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pid file after down: %v, want gone", err)
	}

	res = runCLIEnv(t, e, "down", "--data-dir", dataDir)
	if res.code != 0 || !strings.Contains(res.stdout, "not running") {
		t.Errorf("down without pilot: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

func TestUpReportsPilotExitingEarly(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	script := filepath.Join(t.TempDir(), "pilot-script")
	body := "#!/bin/sh\necho \"starting $*\"\necho 'fatal: cannot open the data folder' >&2\nexit 3\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	e := installPilot(t, script)
	dataDir := t.TempDir()
	// An older run's log lines must not be shown as this run's.
	if err := os.WriteFile(logPath(dataDir), []byte("old run output\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A pid file naming a live process that is not pilot (a reused pid)
	// must not stop up from starting one.
	if err := writePIDFile(pidPath(dataDir), os.Getpid()); err != nil {
		t.Fatal(err)
	}

	res := runCLIEnv(t, e, "up", "--data-dir", dataDir, "--listen", freeAddr(t), "--timeout", "20s")
	if res.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []string{"exit status 3", "fatal: cannot open the data folder", "--data-dir " + filepath.Join(dataDir, "pilot"), "--log-format json"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, res.stderr)
		}
	}
	if strings.Contains(res.stderr, "old run output") {
		t.Errorf("error shows an older run's log:\n%s", res.stderr)
	}
	if _, err := os.Stat(pidPath(dataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pid file after a failed start: %v, want removed", err)
	}
}

func TestUpWhenPilotAlreadyAnswers(t *testing.T) {
	s := newFakeState()
	p := startFake(t, s)
	addr := p.addr
	e := testEnv(t) // no pilot binary anywhere: up must not need one
	res := runCLIEnv(t, e, "--pilot", addr, "--ca", p.caFile, "--token", p.token, "up", "--data-dir", t.TempDir(), "--listen", addr)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "already running at "+addr) {
		t.Errorf("output:\n%s", res.stdout)
	}
	if strings.Contains(res.stdout, "export HANGAR_PILOT") {
		t.Errorf("suggests exporting the address already in use:\n%s", res.stdout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.runtimes) != 1 || s.runtimes[0].GetId() != "local" {
		t.Errorf("runtimes = %v, want local created", s.runtimes)
	}
}

func TestDownRemovesStalePIDFile(t *testing.T) {
	dataDir := t.TempDir()
	// A child that has exited gives a pid that surely runs nothing of ours.
	pid, err := startDetached("/bin/true", nil, dataDir, nil)
	if err != nil {
		t.Skip("cannot start /bin/true:", err)
	}
	if err := pollUntil(context.Background(), 10*time.Millisecond, 5*time.Second, func() (bool, error) { return !processAlive(pid), nil }); err != nil {
		t.Fatal(err)
	}
	if err := writePIDFile(pidPath(dataDir), pid); err != nil {
		t.Fatal(err)
	}
	res := runCLIEnv(t, testEnv(t), "down", "--data-dir", dataDir)
	if res.code != 0 || !strings.Contains(res.stdout, "stale") {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if _, err := os.Stat(pidPath(dataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pid file: %v, want removed", err)
	}
}

func TestDownRefusesAPIDThatIsNotPilot(t *testing.T) {
	dataDir := t.TempDir()
	// This test process is alive and is not named pilot.
	if err := writePIDFile(pidPath(dataDir), os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		t.Skip("needs /proc to tell process names")
	}
	res := runCLIEnv(t, testEnv(t), "down", "--data-dir", dataDir)
	if res.code != 1 || !strings.Contains(res.stderr, "not pilot") {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if _, err := os.Stat(pidPath(dataDir)); err != nil {
		t.Errorf("pid file: %v, want kept", err)
	}
}
