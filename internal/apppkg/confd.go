package apppkg

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/BurntSushi/toml"

	"github.com/hangarhq/hangar/internal/limits"
)

// ConfdResource is the [template] table of a confd/conf.d/*.toml file.
type ConfdResource struct {
	Src       string   `toml:"src"`  // relative to confd/templates/
	Dest      string   `toml:"dest"` // absolute path on the instance
	Keys      []string `toml:"keys"`
	ReloadCmd string   `toml:"reload_cmd"`
	CheckCmd  string   `toml:"check_cmd"`
	Mode      string   `toml:"mode"` // octal, e.g. "0644"
	UID       *int     `toml:"uid"`
	GID       *int     `toml:"gid"`
	Owner     string   `toml:"owner"`
	Group     string   `toml:"group"`
	Prefix    string   `toml:"prefix"`
}

// ParseConfdResource parses and checks one conf.d file; name is used in
// errors.
func ParseConfdResource(name string, data []byte) (ConfdResource, error) {
	if len(data) > limits.MaxConfdResourceBytes {
		return ConfdResource{}, fmt.Errorf("%s: %d bytes, more than the %d allowed for a template resource", name, len(data), limits.MaxConfdResourceBytes)
	}
	// Counted before parsing: deep nesting is what makes the parser costly.
	if n := bytes.Count(data, []byte("{")) + bytes.Count(data, []byte("[")) + bytes.Count(data, []byte(".")); n > limits.MaxConfdResourceNesting {
		return ConfdResource{}, fmt.Errorf("%s: %d '{', '[' and '.' characters, more than the %d allowed (deeply nested tables and keys are refused)", name, n, limits.MaxConfdResourceNesting)
	}
	var doc struct {
		Template *ConfdResource `toml:"template"`
	}
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return ConfdResource{}, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, 0, len(und))
		for _, k := range und {
			keys = append(keys, k.String())
		}
		return ConfdResource{}, fmt.Errorf("%s: unknown keys %s; allowed in [template]: src, dest, keys, reload_cmd, check_cmd, mode, uid, gid, owner, group, prefix", name, strings.Join(keys, ", "))
	}
	if doc.Template == nil {
		return ConfdResource{}, fmt.Errorf("%s: missing the [template] table", name)
	}
	r := *doc.Template
	if r.Src == "" {
		return ConfdResource{}, fmt.Errorf("%s: [template] src is required (a file in confd/templates/)", name)
	}
	if c, skip, err := cleanName(r.Src); err != nil || skip || c != r.Src {
		return ConfdResource{}, fmt.Errorf("%s: [template] src %q: must be a plain relative path inside confd/templates/", name, r.Src)
	}
	if r.Dest == "" || !path.IsAbs(r.Dest) {
		return ConfdResource{}, fmt.Errorf("%s: [template] dest %q: must be an absolute path", name, r.Dest)
	}
	if r.Mode != "" {
		if _, err := strconv.ParseUint(r.Mode, 8, 32); err != nil {
			return ConfdResource{}, fmt.Errorf("%s: [template] mode %q: must be octal, like \"0644\"", name, r.Mode)
		}
	}
	for _, k := range r.Keys {
		if !strings.HasPrefix(k, "/") {
			return ConfdResource{}, fmt.Errorf("%s: [template] keys: %q must start with '/'", name, k)
		}
	}
	return r, nil
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
