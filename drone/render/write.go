package render

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"

	"github.com/hangarhq/hangar/drone/shellcmd"
	"github.com/hangarhq/hangar/internal/confdres"
)

// target is the filesystem rendered files go to. With a root dir it is an
// *os.Root: every path, and every symlink met on the way, is resolved inside
// the root and one that leaves it is refused, so neither a dest nor a
// symlink the app's own commands planted in the root can make the drone
// write elsewhere. Without a root dir the drone owns its machine: hostFS
// writes anywhere. Names are slash-separated and relative to the root.
type target interface {
	MkdirAll(name string, perm fs.FileMode) error
	OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error)
	Lstat(name string) (fs.FileInfo, error)
	Rename(oldname, newname string) error
	Remove(name string) error
}

// hostFS is the whole filesystem, for a drone without a root dir. An
// *os.Root of "/" would refuse absolute symlinks, which real systems have
// (/var/run -> /run).
type hostFS struct{}

func (hostFS) abs(name string) string { return "/" + name }

func (h hostFS) MkdirAll(name string, perm fs.FileMode) error { return os.MkdirAll(h.abs(name), perm) }
func (h hostFS) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(h.abs(name), flag, perm)
}
func (h hostFS) Lstat(name string) (fs.FileInfo, error) { return os.Lstat(h.abs(name)) }
func (h hostFS) Rename(oldname, newname string) error {
	return os.Rename(h.abs(oldname), h.abs(newname))
}
func (h hostFS) Remove(name string) error { return os.Remove(h.abs(name)) }

// openTarget opens the instance's filesystem for one render; the caller
// calls the returned close.
func (r *Renderer) openTarget() (target, func(), error) {
	if r.cfg.RootDir == "" {
		return hostFS{}, func() {}, nil
	}
	root, err := os.OpenRoot(r.cfg.RootDir)
	if err != nil {
		return nil, nil, fmt.Errorf("open the root dir: %w", err)
	}
	return root, func() { _ = root.Close() }, nil
}

// hostPath is where name of the target is on this machine, for commands.
func (r *Renderer) hostPath(name string) string {
	if r.cfg.RootDir == "" {
		return "/" + name
	}
	return filepath.Join(r.cfg.RootDir, filepath.FromSlash(name))
}

// destName turns a checked dest (clean, absolute) into a name of the
// target. Drones before this one stored dests already moved under the
// root dir in their installed files; such a dest is taken back.
func (r *Renderer) destName(dest string) string {
	if r.cfg.RootDir != "" {
		if rest, ok := strings.CutPrefix(dest, filepath.ToSlash(r.cfg.RootDir)+"/"); ok {
			return rest
		}
	}
	return strings.TrimPrefix(dest, "/")
}

// owner is the uid and gid a resource asks for; -1 leaves one as the
// drone creates it.
func owner(res confdres.Resource) (uid, gid int, err error) {
	uid, gid = -1, -1
	switch {
	case res.UID != nil:
		uid = *res.UID
	case res.Owner != "":
		u, err := user.Lookup(res.Owner)
		if err != nil {
			return 0, 0, fmt.Errorf("owner %q: %w", res.Owner, err)
		}
		if uid, err = strconv.Atoi(u.Uid); err != nil {
			return 0, 0, fmt.Errorf("owner %q: uid %q: %w", res.Owner, u.Uid, err)
		}
	}
	switch {
	case res.GID != nil:
		gid = *res.GID
	case res.Group != "":
		g, err := user.LookupGroup(res.Group)
		if err != nil {
			return 0, 0, fmt.Errorf("group %q: %w", res.Group, err)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return 0, 0, fmt.Errorf("group %q: gid %q: %w", res.Group, g.Gid, err)
		}
	}
	return uid, gid, nil
}

// place puts content at res's dest as confd would, but confined to t and
// with exactly the mode res gives: the output is staged beside dest (mode,
// owner and all), check_cmd runs on the staged file, the staged file
// replaces dest, and reload_cmd runs. Nothing happens when dest already
// has that content, mode and owner. The mode is res.Perm when res gives
// one, else dest's current permission bits, else 0644.
func (r *Renderer) place(ctx context.Context, t target, res confdres.Resource, content []byte) error {
	name := r.destName(res.Dest)
	dir, base := path.Split(name)
	if dir != "" {
		if err := t.MkdirAll(strings.TrimSuffix(dir, "/"), 0o755); err != nil {
			return fmt.Errorf("create the folder of dest %s: %w", res.Dest, err)
		}
	}
	old, err := t.Lstat(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dest %s: %w", res.Dest, err)
	}
	perm := fs.FileMode(0o644)
	switch {
	case res.Mode != "":
		perm = res.Perm
	case old != nil && old.Mode().IsRegular():
		perm = old.Mode().Perm()
	}
	uid, gid, err := owner(res)
	if err != nil {
		return err
	}

	staged, staging, err := r.stage(t, dir, base, content, perm, uid, gid)
	if err != nil {
		return fmt.Errorf("stage the output beside dest %s: %w", res.Dest, err)
	}
	defer func() {
		if staging != "" {
			_ = t.Remove(staging)
		}
	}()
	if old != nil && same(t, name, old, staged, content) {
		return nil
	}
	if res.CheckCmd != "" {
		cmd, err := checkCommand(res.CheckCmd, r.hostPath(staging))
		if err != nil {
			return fmt.Errorf("check_cmd: %w", err)
		}
		if err := r.runHook(cmd); err != nil {
			return fmt.Errorf("check_cmd refused the output, dest %s unchanged: %w", res.Dest, err)
		}
	}
	if err := t.Rename(staging, name); err != nil {
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("replace dest %s: %w", res.Dest, err)
		}
		// dest is a mount point (a file bind-mounted into a container):
		// it cannot be replaced, only rewritten.
		if err := overwrite(t, name, content, perm); err != nil {
			return fmt.Errorf("rewrite dest %s (a mount point): %w", res.Dest, err)
		}
	} else {
		staging = ""
	}
	r.log.Info("config file updated", "dest", res.Dest, "mode", fmt.Sprintf("%04o", perm))
	if res.ReloadCmd != "" {
		if err := r.runHook(res.ReloadCmd); err != nil {
			return fmt.Errorf("reload_cmd: %w", err)
		}
	}
	return nil
}

// stage writes content to a new file beside dest in dir, with perm, uid and
// gid, and returns its info and name.
func (r *Renderer) stage(t target, dir, base string, content []byte, perm fs.FileMode, uid, gid int) (fs.FileInfo, string, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := dir + "." + base + "." + hex.EncodeToString(rnd[:])
	f, err := t.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (fs.FileInfo, string, error) {
		f.Close()
		_ = t.Remove(name)
		return nil, "", err
	}
	if _, err := f.Write(content); err != nil {
		return fail(err)
	}
	if uid != -1 || gid != -1 {
		// As confd: an owner the drone may not give (it runs unprivileged)
		// leaves the file the drone's, rather than failing the render.
		if err := f.Chown(uid, gid); err != nil {
			r.log.Warn("config file owner not changed", "file", name, "uid", uid, "gid", gid, "err", err)
		}
	}
	// After the chown, which may clear mode bits; fchmod is exact, the
	// umask does not apply.
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = t.Remove(name)
		return nil, "", err
	}
	return fi, name, nil
}

// same reports whether dest (old) already is what was staged: a regular
// file with the same content, mode and owner.
func same(t target, name string, old, staged fs.FileInfo, content []byte) bool {
	if !old.Mode().IsRegular() || old.Mode() != staged.Mode() || old.Size() != int64(len(content)) {
		return false
	}
	ost, ok1 := old.Sys().(*syscall.Stat_t)
	sst, ok2 := staged.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || ost.Uid != sst.Uid || ost.Gid != sst.Gid {
		return false
	}
	f, err := t.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	cur, err := io.ReadAll(io.LimitReader(f, int64(len(content))+1))
	return err == nil && bytes.Equal(cur, content)
}

// overwrite rewrites a dest that cannot be replaced.
func overwrite(t target, name string, content []byte, perm fs.FileMode) error {
	f, err := t.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkCommand fills check_cmd's {{.src}} with the staged file, as confd
// does.
func checkCommand(cmd, staged string) (string, error) {
	t, err := template.New("check_cmd").Parse(cmd)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, map[string]string{"src": staged}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// runHook runs a check_cmd or reload_cmd as confd does: through /bin/sh -c,
// in the drone's working directory (the root dir), with its environment
// (drone/shellcmd). It ends with the renderer (Close): the command's
// process group is then killed.
func (r *Renderer) runHook(cmdline string) error {
	if r.cfg.RunHook != nil {
		return r.cfg.RunHook(r.life, cmdline)
	}
	_, tail, err := shellcmd.Run(r.life, r.cfg.RootDir, r.cfg.DataDir, cmdline)
	if err == nil {
		return nil
	}
	if r.life.Err() != nil {
		return fmt.Errorf("%q stopped: the renderer is closing", cmdline)
	}
	// The output as lines, not quoted: what an operator reads under the
	// node in `hangar cluster show` (HAProxy's reasons, one a line). Valid
	// UTF-8 whatever the command printed (the tail may cut a character):
	// the error travels in protobuf strings.
	return fmt.Errorf("%w; output:\n%s", err, strings.TrimRight(strings.ToValidUTF8(string(tail), "\uFFFD"), "\n"))
}
