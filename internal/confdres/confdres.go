// Package confdres parses and checks confd template resources (the
// [template] table of a conf.d/*.toml) by one set of rules wherever one is
// accepted: when an app package is pushed (internal/apppkg) and when a drone
// installs or renders one (drone/render). A resource that passes names only
// what a drone can confine and apply exactly: src is a plain path inside
// templates/, dest a clean absolute path inside the instance, and mode
// permission bits in octal, without setuid, setgid or sticky bits.
package confdres

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/hangarhq/hangar/internal/limits"
)

// Resource is the [template] table of a conf.d/*.toml file.
type Resource struct {
	Src       string   `toml:"src"`  // relative to templates/
	Dest      string   `toml:"dest"` // absolute path on the instance
	Keys      []string `toml:"keys"`
	ReloadCmd string   `toml:"reload_cmd"`
	CheckCmd  string   `toml:"check_cmd"`
	Mode      string   `toml:"mode"` // octal permission bits, e.g. "0644"; "" keeps the file's
	UID       *int     `toml:"uid"`
	GID       *int     `toml:"gid"`
	Owner     string   `toml:"owner"`
	Group     string   `toml:"group"`
	Prefix    string   `toml:"prefix"` // accepted for compatibility; drones always read /self

	// Perm is Mode parsed (octal): what the rendered file gets. Valid when
	// Mode is not empty.
	Perm fs.FileMode `toml:"-"`
}

// Keys allowed in [template], for error messages.
const allowedKeys = "src, dest, keys, reload_cmd, check_cmd, mode, uid, gid, owner, group, prefix"

// Parse parses and checks one conf.d file; name starts every error.
func Parse(name string, data []byte) (Resource, error) {
	if len(data) > limits.MaxConfdResourceBytes {
		return Resource{}, fmt.Errorf("%s: %d bytes, more than the %d allowed for a template resource", name, len(data), limits.MaxConfdResourceBytes)
	}
	// Counted before parsing: deep nesting is what makes the parser costly.
	if n := bytes.Count(data, []byte("{")) + bytes.Count(data, []byte("[")) + bytes.Count(data, []byte(".")); n > limits.MaxConfdResourceNesting {
		return Resource{}, fmt.Errorf("%s: %d '{', '[' and '.' characters, more than the %d allowed (deeply nested tables and keys are refused)", name, n, limits.MaxConfdResourceNesting)
	}
	var doc struct {
		Template *Resource `toml:"template"`
	}
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return Resource{}, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, 0, len(und))
		for _, k := range und {
			keys = append(keys, k.String())
		}
		return Resource{}, fmt.Errorf("%s: unknown keys %s; allowed in [template]: %s", name, strings.Join(keys, ", "), allowedKeys)
	}
	if doc.Template == nil {
		return Resource{}, fmt.Errorf("%s: missing the [template] table", name)
	}
	r := *doc.Template
	if r.Src == "" {
		return Resource{}, fmt.Errorf("%s: [template] src is required (a file in templates/)", name)
	}
	if err := CheckSrc(r.Src); err != nil {
		return Resource{}, fmt.Errorf("%s: [template] src %q: %w", name, r.Src, err)
	}
	if err := CheckDest(r.Dest); err != nil {
		return Resource{}, fmt.Errorf("%s: [template] dest %q: %w", name, r.Dest, err)
	}
	if r.Mode != "" {
		if r.Perm, err = ParseMode(r.Mode); err != nil {
			return Resource{}, fmt.Errorf("%s: [template] mode %q: %w", name, r.Mode, err)
		}
	}
	for _, k := range r.Keys {
		if !strings.HasPrefix(k, "/") || hasDotDot(k) {
			return Resource{}, fmt.Errorf("%s: [template] keys: %q must start with '/' and have no '..' segment", name, k)
		}
	}
	return r, nil
}

// CheckSrc checks a template name: a plain relative path inside
// templates/, with no '.', '..' or empty segment and no segment starting
// with a dot (package archives leave such files out).
func CheckSrc(src string) error {
	if src == "" || strings.HasPrefix(src, "/") || strings.ContainsAny(src, "\\\x00") {
		return errors.New(`must be a plain relative path inside templates/, like "app/app.conf.tmpl"`)
	}
	for _, seg := range strings.Split(src, "/") {
		if seg == "" || strings.HasPrefix(seg, ".") {
			return errors.New(`must be a plain relative path inside templates/, like "app/app.conf.tmpl": no empty segment and none starting with '.'`)
		}
	}
	return nil
}

// CheckDest checks a destination: a clean absolute path of a file in the
// instance. Cleaning is not done for the package: "/../../tmp/x" would
// clean to "/tmp/x", which is not what its author meant either.
func CheckDest(dest string) error {
	switch {
	case dest == "":
		return errors.New(`required: the absolute path of the rendered file in the instance, like "/etc/app/app.conf"`)
	case !strings.HasPrefix(dest, "/"):
		return errors.New(`must be an absolute path in the instance, like "/etc/app/app.conf"`)
	case dest == "/" || path.Clean(dest) != dest || strings.ContainsRune(dest, 0):
		return errors.New(`must be a clean absolute path of a file in the instance, like "/etc/app/app.conf": no '.', '..' or empty segments, no trailing '/'`)
	}
	return nil
}

// MaxPerm is the largest mode a resource may give: permission bits only. A
// rendered config file has no business being setuid, setgid or sticky.
const MaxPerm fs.FileMode = 0o777

// ParseMode reads a mode as confd's documentation writes it: octal digits,
// with or without a leading 0 ("0640" and "640" are both rw-r-----).
func ParseMode(s string) (fs.FileMode, error) {
	if s == "" || len(s) > 6 || strings.Trim(s, "01234567") != "" {
		return 0, errors.New(`must be octal permission bits, like "0644" (0 to 0777)`)
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf(`must be octal permission bits, like "0644" (0 to 0777): %w`, err)
	}
	if fs.FileMode(v) > MaxPerm {
		return 0, fmt.Errorf("%04o: setuid, setgid and sticky bits are not allowed; give permission bits only, 0 to 0777", v)
	}
	return fs.FileMode(v), nil
}

func hasDotDot(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}
