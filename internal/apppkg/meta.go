package apppkg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"unicode"
)

// Meta is package.json.
type Meta struct {
	// APIVersion is OpenPitrix's package format version: "v1" or empty.
	APIVersion  string       `json:"api_version,omitempty"`
	Name        string       `json:"name"`
	Version     string       `json:"version"`
	AppVersion  string       `json:"app_version,omitempty"`
	Description string       `json:"description,omitempty"`
	Icon        string       `json:"icon,omitempty"`
	Home        string       `json:"home,omitempty"`
	Maintainers []Maintainer `json:"maintainers,omitempty"`
	Keywords    []string     `json:"keywords,omitempty"`
	Sources     []string     `json:"sources,omitempty"`
	Screenshots []string     `json:"screenshots,omitempty"`
}

// Maintainer is one entry of package.json maintainers: an object, or a plain
// string taken as the name.
type Maintainer struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	URL   string `json:"url,omitempty"`
}

// UnmarshalJSON accepts "name" or {"name":…, "email":…, "url":…}.
func (m *Maintainer) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*m = Maintainer{Name: s}
		return nil
	}
	type plain Maintainer
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("maintainer: want a string or {name, email, url}: %v", err)
	}
	*m = Maintainer(p)
	return nil
}

const maxNameLen = 64

func parseMeta(data []byte) (Meta, error) {
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Meta{}, jsonError(fileMeta, data, err)
	}
	if err := trailingData(dec); err != nil {
		return Meta{}, jsonError(fileMeta, data, err)
	}
	if m.APIVersion != "" && m.APIVersion != "v1" {
		return Meta{}, fmt.Errorf("%s: api_version %q: only \"v1\" (OpenPitrix's) is known", fileMeta, m.APIVersion)
	}
	if err := checkIdent("name", m.Name); err != nil {
		return Meta{}, fmt.Errorf("%s: %w", fileMeta, err)
	}
	if err := checkIdent("version", m.Version); err != nil {
		return Meta{}, fmt.Errorf("%s: %w", fileMeta, err)
	}
	if m.Icon != "" {
		if _, _, err := cleanName(m.Icon); err != nil || path.IsAbs(m.Icon) {
			return Meta{}, fmt.Errorf("%s: icon: %q must be a relative path inside the package", fileMeta, m.Icon)
		}
	}
	return m, nil
}

// loadMeta reads package.json, or builds the package's Meta from opts when
// it has none (AppCenter packages have none).
func loadMeta(files map[string]file, opts LoadOptions, w *warnings) (Meta, error) {
	f, ok := files[fileMeta]
	if !ok {
		if opts.Name == "" || opts.Version == "" {
			hint := "give the name and version with --name and --version (AppCenter packages have no package.json), or add a package.json with name and version"
			if opts.fromFolder != "" {
				hint = fmt.Sprintf("the folder's name %q gives no version (name it NAME-VERSION, e.g. %s-1.0.0); or %s", opts.fromFolder, opts.Name, hint)
			}
			return Meta{}, fmt.Errorf("%s: missing, and no version given: %s", fileMeta, hint)
		}
		m := Meta{Name: opts.Name, Version: opts.Version}
		for field, v := range map[string]string{"name": m.Name, "version": m.Version} {
			if err := checkIdent(field, v); err != nil {
				return Meta{}, fmt.Errorf("%s: %w", fileMeta, err)
			}
		}
		if opts.fromFolder != "" {
			w.add("%s: none; name %q and version %q are taken from the folder's name %q (give --name and --version to choose others)", fileMeta, m.Name, m.Version, opts.fromFolder)
		}
		return m, nil
	}
	m, err := parseMeta(f.data)
	if err != nil {
		return Meta{}, err
	}
	if opts.Name != "" && opts.fromFolder == "" && !strings.EqualFold(opts.Name, m.Name) {
		return Meta{}, fmt.Errorf("%s: name %q differs from the name given, %q; give none, or the same", fileMeta, m.Name, opts.Name)
	}
	if opts.Version != "" && opts.fromFolder == "" && opts.Version != m.Version {
		return Meta{}, fmt.Errorf("%s: version %q differs from the version given, %q; give none, or the same", fileMeta, m.Version, opts.Version)
	}
	return m, nil
}

// checkIdent checks a name or version: it ends up in catalog keys and
// paths, so it must be short and free of separators and spaces.
func checkIdent(field, v string) error {
	if v == "" {
		return fmt.Errorf("%s is required", field)
	}
	if len(v) > maxNameLen {
		return fmt.Errorf("%s %q: longer than %d characters", field, v, maxNameLen)
	}
	for _, r := range v {
		if unicode.IsSpace(r) || r == '/' || r == '\\' || !unicode.IsPrint(r) {
			return fmt.Errorf("%s %q: only printable characters without spaces, '/' or '\\' are allowed", field, v)
		}
	}
	if v == "." || v == ".." || strings.HasPrefix(v, "-") {
		return fmt.Errorf("%s %q: must not be '.', '..' or start with '-'", field, v)
	}
	return nil
}

type locale struct {
	name  string
	texts map[string]string
}

func parseLocale(name string, data []byte) (locale, error) {
	rest := strings.TrimPrefix(name, "locale/")
	if strings.Contains(rest, "/") || !strings.HasSuffix(rest, ".json") || rest == ".json" {
		return locale{}, fmt.Errorf("%s: locale files must be locale/<language>.json", name)
	}
	texts := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&texts); err != nil {
		return locale{}, jsonError(name, data, fmt.Errorf("want an object of strings: %w", err))
	}
	if err := trailingData(dec); err != nil {
		return locale{}, jsonError(name, data, err)
	}
	return locale{name: strings.TrimSuffix(rest, ".json"), texts: texts}, nil
}
