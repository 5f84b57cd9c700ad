package supervise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hangarhq/hangar/drone/rootpath"
)

// Limits of a command.
const (
	MaxOutputBytes  = 64 << 10
	MaxCommandIDLen = 128
)

// Build builds the process for rec: /bin/sh -c in dir, in a process
// group of its own, so a timeout can kill everything the command started.
// Output goes to a file rather than a pipe: a daemon started by the command
// inherits it, and with a pipe it would hold up the command's end or, once
// the drone closed its side, die of SIGPIPE at its next write.
func Build(rec Record, dir string, env []string, out *os.File) (*exec.Cmd, error) {
	// Where the instance's root is a dir of the host, the command's paths
	// mean files there (drone/rootpath).
	c := exec.Command("/bin/sh", "-c", rootpath.Map(dir, rec.Cmd))
	c.Dir = dir
	if c.Dir == "" {
		c.Dir = "/"
	}
	c.Env = env
	c.Stdout, c.Stderr = out, out
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if rec.User != "" {
		cred, u, err := credentialFor(rec.User, os.Geteuid())
		if err != nil {
			return nil, err
		}
		if cred != nil {
			c.SysProcAttr.Credential = cred
			// The drone's HOME would not be writable by that user.
			c.Env = withUserEnv(c.Env, u)
		}
	}
	return c, nil
}

// credentialFor looks up name (or a numeric uid). It returns a nil
// credential when name is the drone's own user (euid), and an error saying
// so when the drone is not root and so cannot switch to another.
func credentialFor(name string, euid int) (*syscall.Credential, *user.User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("run as user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("run as user %q: uid %q is not numeric", name, u.Uid)
	}
	if int(uid) == euid {
		return nil, u, nil
	}
	if euid != 0 {
		// On the local runtime every instance runs as an unprivileged
		// user of its own, which is the point: it must not become root.
		return nil, nil, fmt.Errorf("run as user %q: this drone runs as unprivileged uid %d and cannot switch users (on the local runtime every instance has a user of its own); leave the command's user unset to run it as the drone's user", name, euid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("run as user %q: gid %q is not numeric", name, u.Gid)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return cred, u, nil
}

func withUserEnv(env []string, u *user.User) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || k == "USER" || k == "LOGNAME" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+u.HomeDir, "USER="+u.Username, "LOGNAME="+u.Username)
}

// KillGroup sends SIGTERM to the process group, gives it the grace period to
// exit, then SIGKILLs whatever is left, and returns once the shell was
// reaped (its result is read from waitErr).
func KillGroup(pgid int, waitErr <-chan error, graceTime time.Duration) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	grace := time.NewTimer(graceTime)
	defer grace.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	reaped := false
	for {
		select {
		case <-waitErr:
			reaped = true
			waitErr = nil
		case <-poll.C:
		case <-grace.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			if !reaped {
				<-waitErr
			}
			return
		}
		// The group is gone once every member exited; only then may the
		// grace period end early (a child may still be shutting down
		// cleanly after the shell itself went).
		if reaped && errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
			return
		}
	}
}

// exitCode follows the shell's convention: 128+N for a process killed by
// signal N.
func ExitCode(ps *os.ProcessState) int32 {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int32(128 + int(ws.Signal()))
	}
	return int32(ps.ExitCode())
}

// ReadTail returns the last limit bytes of the file at path, and whether
// there was more.
func ReadTail(path string, limit int) ([]byte, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	size := fi.Size()
	off := max(0, size-int64(limit))
	buf := make([]byte, size-off)
	n, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	return buf[:n], off > 0, nil
}

// ValidateCommandID checks an id before it is used as a file name.
func ValidateCommandID(id string) error {
	if id == "" {
		return errors.New("command_id is required")
	}
	if len(id) > MaxCommandIDLen {
		return fmt.Errorf("command_id is %d characters long, at most %d are allowed", len(id), MaxCommandIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("command_id %q is not allowed", id)
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("command_id %q: character %q is not allowed (allowed: A-Z a-z 0-9 . _ -)", id, c)
		}
	}
	return nil
}
