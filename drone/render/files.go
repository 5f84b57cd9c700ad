package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// resource is the part of a conf.d/*.toml the drone checks and rewrites.
type resource struct {
	src, dest string
}

// checkName validates a delivered file's path: "conf.d/<x>.toml" or
// "templates/<x>", relative, and staying inside its folder.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, `\`) {
		return fmt.Errorf("files[%q]: path must be relative, under conf.d/ or templates/", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("files[%q]: path must not contain empty, . or .. segments", name)
		}
	}
	dir, rest, _ := strings.Cut(name, "/")
	switch {
	case dir == "conf.d" && strings.HasSuffix(rest, ".toml") && rest != ".toml":
	case dir == "templates" && rest != "":
	default:
		return fmt.Errorf("files[%q]: allowed paths are conf.d/<name>.toml and templates/<name>", name)
	}
	return nil
}

// prepare checks a set of confd files and returns it ready to be written:
// each toml names a template of the set, and when root is set each
// absolute dest is moved under root (the instance's filesystem root on the
// local runtime).
func prepare(files map[string][]byte, root string) (map[string][]byte, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("files: empty; at least one conf.d/<name>.toml and its template are required")
	}
	out := make(map[string][]byte, len(files))
	nToml := 0
	for _, name := range sortedKeys(files) {
		if err := checkName(name); err != nil {
			return nil, err
		}
		data := files[name]
		if strings.HasPrefix(name, "conf.d/") {
			nToml++
			res, rewritten, err := rewriteResource(name, data, root)
			if err != nil {
				return nil, err
			}
			if _, ok := files["templates/"+res.src]; !ok {
				return nil, fmt.Errorf("files[%q]: template.src %q is not among the files (want templates/%s)", name, res.src, res.src)
			}
			data = rewritten
		}
		out[name] = data
	}
	if nToml == 0 {
		return nil, fmt.Errorf("files: no conf.d/<name>.toml among %d files", len(files))
	}
	return out, nil
}

// rewriteResource parses a template resource and moves its dest under root.
func rewriteResource(name string, data []byte, root string) (resource, []byte, error) {
	var m map[string]any
	if _, err := toml.Decode(string(data), &m); err != nil {
		return resource{}, nil, fmt.Errorf("files[%q]: not valid TOML: %w", name, err)
	}
	t, ok := m["template"].(map[string]any)
	if !ok {
		return resource{}, nil, fmt.Errorf("files[%q]: a [template] table is required", name)
	}
	var res resource
	res.src, _ = t["src"].(string)
	res.dest, _ = t["dest"].(string)
	switch {
	case res.src == "":
		return res, nil, fmt.Errorf("files[%q]: template.src is required", name)
	case path.IsAbs(res.src) || path.Clean(res.src) != res.src || strings.HasPrefix(res.src, "../"):
		return res, nil, fmt.Errorf("files[%q]: template.src %q must be a clean path relative to templates/", name, res.src)
	case res.dest == "":
		return res, nil, fmt.Errorf("files[%q]: template.dest is required", name)
	}
	if root == "" || !path.IsAbs(res.dest) {
		return res, data, nil
	}
	res.dest = filepath.Join(root, res.dest)
	t["dest"] = res.dest
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(m); err != nil {
		return res, nil, fmt.Errorf("files[%q]: re-encode with dest under the root dir: %w", name, err)
	}
	return res, buf.Bytes(), nil
}

// readResource reads src and dest of a persisted toml.
func readResource(file string) (resource, error) {
	var tc struct {
		Template struct {
			Src  string `toml:"src"`
			Dest string `toml:"dest"`
		} `toml:"template"`
	}
	if _, err := toml.DecodeFile(file, &tc); err != nil {
		return resource{}, err
	}
	return resource{src: tc.Template.Src, dest: tc.Template.Dest}, nil
}

// collect reads the conf.d and templates folders of a confd dir.
func collect(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, sub := range []string{"conf.d", "templates"} {
		base := filepath.Join(dir, sub)
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == base && os.IsNotExist(err) {
					return fs.SkipDir
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			if sub == "conf.d" && !strings.HasSuffix(p, ".toml") {
				return nil
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[filepath.ToSlash(rel)] = b
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", base, err)
		}
	}
	return files, nil
}

// install writes files into dst atomically as a whole: they are written to a
// sibling folder first, which then replaces dst by rename.
func install(dst string, files map[string][]byte) error {
	staged := dst + ".new"
	if err := os.RemoveAll(staged); err != nil {
		return fmt.Errorf("clear %s: %w", staged, err)
	}
	for _, name := range sortedKeys(files) {
		p := filepath.Join(staged, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(p, files[name], 0o600); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	// conf.d and templates must exist even when a folder got no files.
	for _, sub := range []string{"conf.d", "templates"} {
		if err := os.MkdirAll(filepath.Join(staged, sub), 0o700); err != nil {
			return fmt.Errorf("create %s: %w", sub, err)
		}
	}
	old := dst + ".old"
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("clear %s: %w", old, err)
	}
	if err := os.Rename(dst, old); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("set aside %s: %w", dst, err)
	}
	if err := os.Rename(staged, dst); err != nil {
		_ = os.Rename(old, dst)
		return fmt.Errorf("install %s: %w", dst, err)
	}
	_ = os.RemoveAll(old)
	return nil
}

// recoverInstall finishes or undoes an install a crash interrupted.
func recoverInstall(dst string) {
	if _, err := os.Stat(dst); os.IsNotExist(err) {
		_ = os.Rename(dst+".old", dst)
	}
	_ = os.RemoveAll(dst + ".new")
	_ = os.RemoveAll(dst + ".old")
}

// resources lists the tomls of a confd dir, sorted.
func resources(dir string) ([]string, error) {
	var out []string
	base := filepath.Join(dir, "conf.d")
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".toml") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", base, err)
	}
	sort.Strings(out)
	return out, nil
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
