// Package shellcmd runs the short commands a drone runs outside its
// executor's durable records (confd's check_cmd and reload_cmd, a health
// check and its action): through /bin/sh -c as confd and AppCenter's agent
// do, in the instance's root, in a process group of its own that is killed
// whole when the command's context ends, and with its output in a file
// rather than a pipe, so that a daemon the command starts in the
// background does not hold the drone up.
package shellcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/hangarhq/hangar/drone/rootpath"
)

// OutputBytes is how much of a command's output Run returns: its tail.
const OutputBytes = 4 << 10

// Run runs cmdline with paths under root mapped into it (drone/rootpath)
// and root as its working directory ("" is the drone's own), the output
// file under tmpDir. It returns the exit code (-1 when the command did not
// exit by itself: killed at ctx's end, or never started), the last
// OutputBytes of its output, and an error for anything but exit 0.
func Run(ctx context.Context, root, tmpDir, cmdline string) (int, []byte, error) {
	out, err := os.CreateTemp(tmpDir, "cmd-*.out")
	if err != nil {
		return -1, nil, fmt.Errorf("output file: %w", err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", rootpath.Map(root, cmdline))
	c.Dir = root
	c.Stdout, c.Stderr = out, out
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	err = c.Run()
	tail, _ := readTail(out, OutputBytes)
	if err == nil {
		return 0, tail, nil
	}
	code := -1
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.Exited() {
		code = exit.ExitCode()
	}
	if ctx.Err() != nil {
		return -1, tail, fmt.Errorf("%q stopped: %w", cmdline, context.Cause(ctx))
	}
	return code, tail, fmt.Errorf("%q: %w", cmdline, err)
}

// readTail returns the last n bytes of f.
func readTail(f *os.File, n int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	_, err = f.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return b, err
}
