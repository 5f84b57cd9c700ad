package apppkg

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"text/template"

	"github.com/hangarhq/hangar/internal/confdfuncs"
	"github.com/hangarhq/hangar/internal/confdres"
)

// ConfdResource is the [template] table of a confd/conf.d/*.toml file.
type ConfdResource = confdres.Resource

// ParseConfdResource parses and checks one conf.d file by the rules the
// drones apply too (internal/confdres); name is used in errors.
func ParseConfdResource(name string, data []byte) (ConfdResource, error) {
	return confdres.Parse(name, data)
}

// confdFuncs are stand-ins for the functions of the drones' confd
// (internal/confdfuncs): parsing a template needs only their names.
func confdFuncs() template.FuncMap {
	stub := func(...any) (any, error) { return nil, nil }
	m := template.FuncMap{}
	for _, n := range confdfuncs.Names() {
		m[n] = stub
	}
	return m
}

// checkConfd checks the confd files a package ships: every conf.d toml
// parses and points at a template that exists, and every such template
// parses with the functions the drones' confd has.
func checkConfd(files map[string][]byte, w *warnings) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	used := map[string]bool{}
	var errs []error // every file's problem, not only the first
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, "conf.d/")
		if !ok {
			continue
		}
		full := "confd/" + n
		if strings.Contains(rest, "/") || !strings.HasSuffix(rest, ".toml") {
			w.add("%s: confd reads only conf.d/*.toml; this file is not used", full)
			continue
		}
		r, err := ParseConfdResource(full, files[n])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tmpl := "templates/" + r.Src
		if _, ok := files[tmpl]; !ok {
			errs = append(errs, fmt.Errorf("%s: [template] src %q: confd/%s does not exist", full, r.Src, tmpl))
			continue
		}
		used[tmpl] = true
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "templates/") {
			continue
		}
		full := "confd/" + n
		if !used[n] {
			w.add("%s: no conf.d/*.toml uses this template", full)
			continue
		}
		if _, err := template.New(path.Base(n)).Funcs(confdFuncs()).Parse(string(files[n])); err != nil {
			errs = append(errs, newTemplateError(full, err))
		}
	}
	return errors.Join(errs...)
}
