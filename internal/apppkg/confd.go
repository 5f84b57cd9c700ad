package apppkg

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/hangarhq/hangar/internal/confdres"
)

// ConfdResource is the [template] table of a confd/conf.d/*.toml file.
type ConfdResource = confdres.Resource

// ParseConfdResource parses and checks one conf.d file by the rules the
// drones apply too (internal/confdres); name is used in errors.
func ParseConfdResource(name string, data []byte) (ConfdResource, error) {
	return confdres.Parse(name, data)
}

// confdFuncs returns the template functions of the confd the drones run
// (abtreece/confd v0.30.0: its own functions plus memkv's), as stand-ins:
// parsing only needs the names.
func confdFuncs() template.FuncMap {
	stub := func(...any) (any, error) { return nil, nil }
	m := template.FuncMap{}
	for _, n := range []string{"base", "split", "json", "jsonArray", "dir", "map", "getenv", "join",
		"datetime", "toUpper", "toLower", "contains", "replace", "trimSuffix", "lookupIP", "lookupIPV4",
		"lookupIPV6", "lookupSRV", "lookupIfaceIPV4", "lookupIfaceIPV6", "fileExists", "base64Encode",
		"base64Decode", "parseBool", "reverse", "sortByLength", "sortKVByLength", "add", "sub", "div",
		"mod", "mul", "seq", "atoi", "hostname",
		"exists", "ls", "lsdir", "get", "gets", "getv", "getvs"} {
		m[n] = stub
	}
	return m
}

// forkOnlyFuncs are functions of QingCloud's confd fork that stock confd
// lacks; templates using them fail on Hangar's drones.
func forkOnlyFuncs() []string {
	return []string{"filter", "toJson", "toYaml", "min", "max", "lookupV4IP"}
}

var undefinedFuncRe = regexp.MustCompile(`function "([^"]+)" not defined`)

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
			return err
		}
		tmpl := "templates/" + r.Src
		if _, ok := files[tmpl]; !ok {
			return fmt.Errorf("%s: [template] src %q: confd/%s does not exist", full, r.Src, tmpl)
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
			if m := undefinedFuncRe.FindStringSubmatch(err.Error()); m != nil && contains(forkOnlyFuncs(), m[1]) {
				return fmt.Errorf("%s: function %q belongs to QingCloud's confd fork and is not available in Hangar's confd (abtreece/confd): %w", full, m[1], err)
			}
			return fmt.Errorf("%s: %w", full, err)
		}
	}
	return nil
}
