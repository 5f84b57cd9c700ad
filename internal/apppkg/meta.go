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
