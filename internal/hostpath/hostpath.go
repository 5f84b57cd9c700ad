// Package hostpath compares and checks directories of the host pilot runs
// on. Runtimes whose instances run on pilot's host name directories there
// (the local provider's root_dir, bin_dir, ranges_dir); pilot refuses those
// that would put an instance next to its own secrets or inside another
// runtime, and the provider checks that an instance running as a user of its
// own can reach them. Paths are compared after resolving the symbolic links
// of the part that exists, so a link cannot smuggle one directory into
// another.
package hostpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Resolve returns p absolute and clean, with the symbolic links of its
// longest existing prefix resolved. The part that does not exist yet is
// kept as written (it cannot be a link).
func Resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// Within reports whether p is dir or lies under it. Both must be clean
// absolute paths.
func Within(p, dir string) bool {
	if p == dir || dir == "/" {
		return true
	}
	return strings.HasPrefix(p, dir+"/")
}

// Overlap reports whether one of a and b lies within the other.
func Overlap(a, b string) bool { return Within(a, b) || Within(b, a) }

// SearchableByOthers checks that a user with no relation to the owners of
// dir's existing ancestors (and of dir itself, when it exists) may traverse
// them: every one must be a directory with the "other" execute bit. A
// process of such a user (an instance running as a user of its own) can
// then reach whatever is below dir that it is given. The error names the
// first directory in the way and its mode.
func SearchableByOthers(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	var chain []string
	for cur := abs; ; cur = filepath.Dir(cur) {
		chain = append(chain, cur)
		if cur == filepath.Dir(cur) {
			break
		}
	}
	// From / down, so the error names the topmost directory in the way.
	for i := len(chain) - 1; i >= 0; i-- {
		d := chain[i]
		fi, err := os.Stat(d)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", d)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return &NotSearchableError{Dir: d, Mode: fi.Mode().Perm()}
		}
	}
	return nil
}

// NotSearchableError is a directory others may not traverse.
type NotSearchableError struct {
	Dir  string
	Mode fs.FileMode
}

func (e *NotSearchableError) Error() string {
	return fmt.Sprintf("%s (mode %#o) is not searchable by other users", e.Dir, e.Mode)
}

// Private checks that dir is a directory (not a link) owned by uid that no
// other user may write to, and creates it with mode 0700 (its parents 0755)
// when it is missing. what names the setting in errors.
func Private(dir string, uid int, what string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	return CheckPrivate(dir, uid, what)
}

// CheckPrivate is Private without creating anything.
func CheckPrivate(dir string, uid int, what string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory (a symbolic link or a file is refused: it could lead elsewhere)", what, dir)
	}
	if owner, ok := ownerOf(fi); ok && owner != uid {
		return fmt.Errorf("%s %s is owned by uid %d, not by this process's uid %d: another user could change what is in it; remove it or choose another directory", what, dir, owner, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s %s has mode %#o: other users may write to it; it must be writable by its owner only (chmod 700 %s)", what, dir, fi.Mode().Perm(), dir)
	}
	return nil
}
