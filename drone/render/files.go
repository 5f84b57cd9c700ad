package render

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hangarhq/hangar/internal/confdres"
)

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
// each toml passes the rules pushed packages pass (internal/confdres: a
// clean absolute dest, src inside templates/, mode without special bits)
// and names a template of the set. Files are kept as given; dests are
// placed under the root dir only when rendered.
func prepare(files map[string][]byte) (map[string][]byte, error) {
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
			res, err := confdres.Parse(fmt.Sprintf("files[%q]", name), data)
			if err != nil {
				return nil, err
			}
			if _, ok := files["templates/"+res.Src]; !ok {
				return nil, fmt.Errorf("files[%q]: [template] src %q is not among the files (want templates/%s)", name, res.Src, res.Src)
			}
		}
		out[name] = data
	}
	if nToml == 0 {
		return nil, fmt.Errorf("files: no conf.d/<name>.toml among %d files", len(files))
	}
	return out, nil
}

// readResource reads and checks an installed toml; rel names it in errors.
func readResource(file, rel string) (confdres.Resource, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return confdres.Resource{}, err
	}
	return confdres.Parse(rel, data)
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
