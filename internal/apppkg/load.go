package apppkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/cbroglie/mustache"

	"github.com/hangarhq/hangar/internal/limits"
)

// Limits on what a package may hold. They bound the memory one upload can
// take in pilot, compressed and uncompressed (a small archive can expand to
// gigabytes); internal/limits says why each value.
const (
	MaxArchiveBytes = limits.MaxArchiveBytes     // refuse larger archives (compressed)
	MaxFiles        = limits.MaxPackageFiles     // files in one package
	MaxFileBytes    = limits.MaxPackageFileBytes // one file, uncompressed
	MaxTotalBytes   = limits.MaxPackageBytes     // all files, uncompressed
	MaxConfdBytes   = limits.MaxConfdBytes       // confd/conf.d and confd/templates together
)

// File names with a meaning in a package.
const (
	fileMeta     = "package.json"
	fileConfig   = "config.json"
	fileMustache = "cluster.json.mustache"
	fileGoTmpl   = "cluster.json.tmpl"
)

// Template kinds.
const (
	KindMustache   = "mustache"
	KindGoTemplate = "gotemplate"
)

// Package is a loaded and checked app package. It does not change after
// loading and is safe for concurrent use.
type Package struct {
	Meta         Meta              // package.json
	Config       *Config           // parsed config.json
	Template     string            // cluster.json.mustache (or .tmpl) text
	TemplateKind string            // KindMustache | KindGoTemplate
	Confd        map[string][]byte // "conf.d/x.toml", "templates/x.tmpl" (paths relative to confd/)
	Locales      map[string]map[string]string
	Warnings     []string // lint warnings (platform hints without effect here, etc.)
	// Roles are the spec's roles in order, as rendered with the defaults
	// ("" for a role-less app). Required parameters without a value are
	// left empty for that rendering: a package is valid without them, a
	// cluster is not.
	Roles []string

	mustache *mustache.Template // KindMustache
	tags     []tagUse           // distinct tags of the mustache template
	gotmpl   *template.Template // KindGoTemplate
}

// LoadDir loads the package in folder dir. Entries whose name starts with a
// dot (.git, .DS_Store) are skipped, as ArchiveDir skips them; symbolic
// links are refused, so a package means the same as a folder and as an
// archive.
func LoadDir(dir string) (*Package, error) {
	return LoadDirWith(dir, LoadOptions{})
}

// LoadDirWith is LoadDir with the name and version given apart from the
// package (see LoadOptions). When neither package.json nor opts name them,
// they are taken from the folder's name, NAME-VERSION (zookeeper-3.4.13),
// with a warning saying so.
func LoadDirWith(dir string, opts LoadOptions) (*Package, error) {
	files, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	if _, ok := files[fileMeta]; !ok && opts.Name == "" && opts.Version == "" {
		opts = FolderOptions(dir)
	}
	return load(files, opts)
}

// LoadArchive loads a package from a .tar.gz of the package folder's
// contents. An archive whose entries all sit in one top folder (made with
// `tar czf x.tgz mypkg/`) is accepted too. Entries must be regular files or
// folders with relative paths that stay inside the package.
func LoadArchive(r io.Reader) (*Package, error) {
	return LoadArchiveWith(r, LoadOptions{})
}

// LoadArchiveWith is LoadArchive with the name and version given apart from
// the package (see LoadOptions).
func LoadArchiveWith(r io.Reader, opts LoadOptions) (*Package, error) {
	files, err := readArchive(r)
	if err != nil {
		return nil, err
	}
	return load(files, opts)
}

// LoadOptions name a package that has no package.json, as AppCenter
// packages have none: the name and version come from the command line
// (hangar app push --name --version) or from pilot's catalog. When the
// package has a package.json, a name or version given here must agree with
// it (names compare without case: the catalog keeps them lowercase).
type LoadOptions struct {
	Name, Version string
	// fromFolder: Name and Version were read off the folder's name.
	fromFolder string
}

// FolderOptions reads NAME-VERSION off the name of the package folder dir,
// for a package without package.json: the version is what follows the last
// '-' that is followed by a digit. Loading with them warns where they came
// from.
func FolderOptions(dir string) LoadOptions {
	base := filepath.Base(dir)
	if abs, err := filepath.Abs(dir); err == nil {
		base = filepath.Base(abs)
	}
	for i := len(base) - 2; i > 0; i-- {
		if base[i] == '-' && base[i+1] >= '0' && base[i+1] <= '9' {
			return LoadOptions{Name: base[:i], Version: base[i+1:], fromFolder: base}
		}
	}
	return LoadOptions{Name: base, fromFolder: base}
}

// ArchiveDir returns a deterministic .tar.gz of the package folder dir: the
// same tree always gives the same bytes (sorted entries, fixed times and
// owners, modes reduced to 0644/0755). It applies the limits LoadArchive
// applies but does not check the package's content; call LoadDir for that.
func ArchiveDir(dir string) ([]byte, error) {
	files, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", dir, err)
	}
	tw := tar.NewWriter(gz)
	for _, n := range names {
		f := files[n]
		mode := int64(0o644)
		if f.exec {
			mode = 0o755
		}
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     n,
			Mode:     mode,
			Size:     int64(len(f.data)),
			ModTime:  time.Unix(0, 0).UTC(),
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("archive %s: %s: %w", dir, n, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("archive %s: %s: %w", dir, n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("archive %s: %w", dir, err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("archive %s: %w", dir, err)
	}
	if buf.Len() > MaxArchiveBytes {
		return nil, fmt.Errorf("archive %s: %d bytes compressed, more than the %d allowed", dir, buf.Len(), MaxArchiveBytes)
	}
	return buf.Bytes(), nil
}

type file struct {
	data []byte
	exec bool
}

// fileSet collects a package's files and enforces the limits.
type fileSet struct {
	files map[string]file
	total int64
}

func (s *fileSet) add(name string, size int64, exec bool, r io.Reader) error {
	if len(s.files) >= MaxFiles {
		return fmt.Errorf("more than %d files", MaxFiles)
	}
	if _, dup := s.files[name]; dup {
		return fmt.Errorf("%s: appears twice", name)
	}
	if size > MaxFileBytes {
		return fmt.Errorf("%s: %d bytes, more than the %d allowed for one file", name, size, MaxFileBytes)
	}
	// Read one byte more than allowed so a header that lies about the size
	// cannot make us read without bound.
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > MaxFileBytes {
		return fmt.Errorf("%s: more than the %d bytes allowed for one file", name, MaxFileBytes)
	}
	s.total += int64(len(data))
	if s.total > MaxTotalBytes {
		return fmt.Errorf("more than %d bytes in all files", MaxTotalBytes)
	}
	s.files[name] = file{data: data, exec: exec}
	return nil
}

// cleanName checks an entry name and returns it slash-separated and
// relative. skip is true for dot entries.
func cleanName(name string) (clean string, skip bool, err error) {
	if name == "" {
		return "", false, errors.New("empty entry name")
	}
	if strings.ContainsRune(name, '\\') {
		return "", false, fmt.Errorf("%q: backslash in entry name", name)
	}
	if strings.ContainsRune(name, 0) {
		return "", false, fmt.Errorf("%q: NUL in entry name", name)
	}
	if strings.HasPrefix(name, "/") {
		return "", false, fmt.Errorf("%q: absolute path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", false, fmt.Errorf("%q: path leaves the package (..)", name)
		}
	}
	clean = path.Clean(name)
	if clean == "." {
		return "", true, nil
	}
	for _, part := range strings.Split(clean, "/") {
		if strings.HasPrefix(part, ".") {
			return clean, true, nil
		}
	}
	return clean, false, nil
}

func readDir(dir string) (map[string]file, error) {
	set := &fileSet{files: map[string]file{}}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load %s: not a folder", dir)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name, skip, err := cleanName(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		if skip {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s: symbolic links are not allowed in a package", name)
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file", name)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return set.add(name, info.Size(), info.Mode()&0o100 != 0, f)
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	return set.files, nil
}

func readArchive(r io.Reader) (map[string]file, error) {
	lr := &io.LimitedReader{R: r, N: MaxArchiveBytes + 1}
	gz, err := gzip.NewReader(lr)
	if err != nil {
		return nil, fmt.Errorf("load archive: not a gzip stream: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	set := &fileSet{files: map[string]file{}}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if lr.N <= 0 {
				return nil, fmt.Errorf("load archive: more than the %d bytes allowed", MaxArchiveBytes)
			}
			return nil, fmt.Errorf("load archive: %w", err)
		}
		name, skip, err := cleanName(hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("load archive: %w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		case tar.TypeSymlink, tar.TypeLink:
			return nil, fmt.Errorf("load archive: %s: links are not allowed in a package", hdr.Name)
		default:
			return nil, fmt.Errorf("load archive: %s: entry type %q is not allowed; only regular files and folders", hdr.Name, string(hdr.Typeflag))
		}
		if skip {
			continue
		}
		if err := set.add(name, hdr.Size, hdr.Mode&0o100 != 0, tr); err != nil {
			if lr.N <= 0 {
				return nil, fmt.Errorf("load archive: more than the %d bytes allowed", MaxArchiveBytes)
			}
			return nil, fmt.Errorf("load archive: %w", err)
		}
	}
	// Reading to the end of the gzip stream verifies its checksum and that
	// no data hides after the tar end marker beyond the limit.
	if _, err := io.Copy(io.Discard, io.LimitReader(gz, MaxFileBytes)); err != nil {
		return nil, fmt.Errorf("load archive: %w", err)
	}
	if lr.N <= 0 {
		return nil, fmt.Errorf("load archive: more than the %d bytes allowed", MaxArchiveBytes)
	}
	return stripTopFolder(set.files), nil
}

// stripTopFolder removes a single folder that wraps the whole package.
func stripTopFolder(files map[string]file) map[string]file {
	if _, ok := files[fileConfig]; ok || len(files) == 0 {
		return files
	}
	top := ""
	for n := range files {
		i := strings.IndexByte(n, '/')
		if i < 0 {
			return files
		}
		if top == "" {
			top = n[:i]
		} else if n[:i] != top {
			return files
		}
	}
	out := make(map[string]file, len(files))
	for n, f := range files {
		out[strings.TrimPrefix(n, top+"/")] = f
	}
	return out
}

// load checks every file and builds the package.
func load(files map[string]file, opts LoadOptions) (*Package, error) {
	p := &Package{Confd: map[string][]byte{}, Locales: map[string]map[string]string{}}
	var w warnings
	// Problems in one file do not hide those in another: an author sees
	// every problem at once. Only rendering needs all files sound.
	var errs []error

	meta, err := loadMeta(files, opts, &w)
	if err != nil {
		errs = append(errs, err)
	}
	p.Meta = meta

	cfgFile, ok := files[fileConfig]
	if !ok {
		errs = append(errs, fmt.Errorf("%s: missing; a package needs one (it declares the parameters)", fileConfig))
	} else if p.Config, err = parseConfig(cfgFile.data, &w); err != nil {
		errs = append(errs, err)
	}

	mf, hasMustache := files[fileMustache]
	gf, hasGo := files[fileGoTmpl]
	switch {
	case hasMustache && hasGo:
		errs = append(errs, fmt.Errorf("package has both %s and %s; keep one", fileMustache, fileGoTmpl))
	case hasMustache:
		p.Template, p.TemplateKind = string(mf.data), KindMustache
	case hasGo:
		p.Template, p.TemplateKind = string(gf.data), KindGoTemplate
	default:
		errs = append(errs, fmt.Errorf("package has no %s (or %s)", fileMustache, fileGoTmpl))
	}
	if p.Config != nil && p.TemplateKind != "" {
		if err := p.compile(); err != nil {
			errs = append(errs, err)
		}
	}

	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case n == fileMeta || n == fileConfig || n == fileMustache || n == fileGoTmpl:
		case strings.HasPrefix(n, "confd/"):
			rel := strings.TrimPrefix(n, "confd/")
			if strings.HasPrefix(rel, "conf.d/") || strings.HasPrefix(rel, "templates/") {
				p.Confd[rel] = files[n].data
			} else {
				w.add("%s: not used by Hangar (only confd/conf.d/*.toml and confd/templates/ are delivered to drones)", n)
			}
		case strings.HasPrefix(n, "locale/"):
			lang, err := parseLocale(n, files[n].data)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			p.Locales[lang.name] = lang.texts
		case isDocFile(n, p.Meta.Icon):
		default:
			w.add("%s: not used by Hangar", n)
		}
	}
	assembled := assembleFragments(p.Confd, &w)
	confdBytes := 0
	for _, data := range p.Confd {
		confdBytes += len(data)
	}
	if confdBytes > MaxConfdBytes {
		errs = append(errs, fmt.Errorf("confd/: %d bytes in conf.d and templates, more than the %d allowed (they are sent to every drone in one message)", confdBytes, MaxConfdBytes))
	}
	if err := checkConfd(p.Confd, &w); err != nil {
		errs = append(errs, fragmentErrors(err, assembled))
	}
	if p.Config == nil || p.TemplateKind == "" || (len(errs) > 0 && !templateCompiled(p)) {
		return nil, errors.Join(errs...)
	}

	// Render once with the defaults so a broken template fails the upload,
	// not the first cluster; it also collects the render-time warnings.
	vals, err := p.resolve(nil, resolveLint)
	if err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("resolve default values: %w", err))...)
	}
	spec, err := p.render(vals, true)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s, rendered with the default values: %w", p.templateName(), err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, s := range spec.Warnings {
		w.add("%s", s)
	}
	for _, n := range spec.Nodes {
		p.Roles = append(p.Roles, n.Role)
	}
	p.checkShellParams(vals, &w)
	p.checkTemplateKeys(spec, &w)
	p.Warnings = w.list()
	return p, nil
}

func (p *Package) templateName() string {
	if p.TemplateKind == KindGoTemplate {
		return fileGoTmpl
	}
	return fileMustache
}

// templateCompiled reports whether the cluster template compiled, so that
// it can be rendered to find its problems too.
func templateCompiled(p *Package) bool {
	return p.mustache != nil || p.gotmpl != nil
}

// isDocFile reports files that are expected in a package folder without
// meaning anything to Hangar: documentation and the icon.
func isDocFile(name, icon string) bool {
	if icon != "" && name == path.Clean(icon) {
		return true
	}
	if strings.Contains(name, "/") {
		return false
	}
	upper := strings.ToUpper(name)
	for _, p := range []string{"README", "LICENSE", "CHANGELOG", "NOTICE"} {
		if strings.HasPrefix(upper, p) {
			return true
		}
	}
	return false
}

// warnings collects lint warnings without duplicates, in order.
type warnings struct {
	seen map[string]bool
	out  []string
}

func (w *warnings) add(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	if w.seen[s] {
		return
	}
	w.seen[s] = true
	w.out = append(w.out, s)
}

func (w *warnings) list() []string {
	return append([]string(nil), w.out...)
}
