// Package rootpath maps the absolute paths a command names into an
// instance's root directory, for runtimes whose instances share the host's
// filesystem (the local runtime gives each instance a root dir on pilot's
// host instead of a filesystem of its own).
//
// App packages are written for a machine of their own: confd renders
// /opt/app/bin/reload.sh and reload_cmd runs "/opt/app/bin/reload.sh". The
// drone already places rendered files under the root; without this, the
// command would look for the script on the host and fail with exit status
// 127. A path is mapped only when it exists under the root, so system
// tools (/bin/sh, /usr/bin/env) keep meaning the host's.
package rootpath

import (
	"os"
	"path/filepath"
	"strings"
)

// Map returns cmd with every absolute path that exists under root replaced
// by its place there. A path starts a shell word, or follows one of
// = : < > ; | & ( ) ' " `, and runs until a character no path of an app
// holds (space, quote, and the shell's operators). An empty root or "/"
// maps nothing.
func Map(root, cmd string) string {
	if root == "" || filepath.Clean(root) == "/" {
		return cmd
	}
	root = filepath.Clean(root)
	var b strings.Builder
	for i := 0; i < len(cmd); {
		if cmd[i] != '/' || (i > 0 && !startsPath(cmd[i-1])) {
			b.WriteByte(cmd[i])
			i++
			continue
		}
		j := i
		for j < len(cmd) && pathByte(cmd[j]) {
			j++
		}
		p := cmd[i:j]
		if mapped := filepath.Join(root, p); !strings.HasPrefix(p+"/", root+"/") && exists(mapped) {
			p = mapped
		}
		b.WriteString(p)
		i = j
	}
	return b.String()
}

func startsPath(c byte) bool {
	return strings.IndexByte(" \t\n=:<>;|&()'\"`", c) >= 0
}

func pathByte(c byte) bool {
	return c > ' ' && strings.IndexByte("<>;|&()'\"`$", c) < 0
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
