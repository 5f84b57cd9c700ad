package apppkg

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// AppCenter packages often keep one template as a folder of fragments:
// confd/templates/<name>/01.env.tmpl, 02.conf.tmpl, … which their image
// build concatenates, in name order and each followed by a newline, into
// templates/<name>.tmpl, the file a conf.d toml names as src. Hangar does
// the same when the package is loaded, so such a package runs unchanged
// and the drones receive the assembled template; errors in it are mapped
// back to the fragment and its line.

// fragment is one piece of an assembled template.
type fragment struct {
	name  string // confd/templates/<name>/<file>
	first int    // line of the assembled template its first line becomes
	lines int
}

// assembleFragments replaces each folder of fragments templates/<name>/ in
// confd by the template templates/<name>.tmpl it makes, when a conf.d toml
// names that template as src and it does not exist (a folder beside an
// existing one is reported as unused; other folders are plain folders of
// templates). It returns where each assembled template's lines come from.
func assembleFragments(confd map[string][]byte, w *warnings) map[string][]fragment {
	wanted := map[string]bool{}
	for n, data := range confd {
		if strings.HasPrefix(n, "conf.d/") {
			if r, err := ParseConfdResource(n, data); err == nil { // checkConfd reports errors
				wanted["templates/"+r.Src] = true
			}
		}
	}
	folders := map[string][]string{}
	for n := range confd {
		rest, ok := strings.CutPrefix(n, "templates/")
		if !ok {
			continue
		}
		dir, file, ok := strings.Cut(rest, "/")
		if !ok || strings.Contains(file, "/") {
			continue
		}
		folders[dir] = append(folders[dir], file)
	}
	out := map[string][]fragment{}
	for dir, files := range folders {
		target := "templates/" + dir + ".tmpl"
		if !wanted[target] {
			continue
		}
		if _, exists := confd[target]; exists {
			w.add("confd/templates/%s/: a folder of fragments beside confd/%s, which is used instead", dir, target)
			continue
		}
		sort.Strings(files)
		var b strings.Builder
		line := 1
		var frags []fragment
		for _, f := range files {
			name := "templates/" + dir + "/" + f
			data := string(confd[name])
			delete(confd, name)
			b.WriteString(data)
			b.WriteByte('\n')
			n := strings.Count(data, "\n") + 1
			frags = append(frags, fragment{name: "confd/" + name, first: line, lines: n})
			line += n
		}
		confd[target] = []byte(b.String())
		out["confd/"+target] = frags
	}
	return out
}

// templateLineRe finds the "name:LINE" that text/template puts in its
// errors ("template: x.tmpl:3: function …").
var templateLineRe = regexp.MustCompile(`:(\d+)(:\d+)?:`)

// fragmentError names the fragment and its line for an error in an
// assembled template full (confd/templates/<name>.tmpl).
func fragmentError(full string, frags []fragment, err error) error {
	m := templateLineRe.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("%s (assembled from confd/templates/%s/): %w", full, strings.TrimSuffix(strings.TrimPrefix(full, "confd/templates/"), ".tmpl"), err)
	}
	line, _ := strconv.Atoi(m[1])
	for _, f := range frags {
		if line >= f.first && line < f.first+f.lines {
			return fmt.Errorf("%s: line %d: %w", f.name, line-f.first+1, err)
		}
	}
	return fmt.Errorf("%s: %w", full, err)
}

// fragmentErrors maps each error of err (one, or joined) about an
// assembled template to its fragment and line.
func fragmentErrors(err error, assembled map[string][]fragment) error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for i, e := range list {
		for full, frags := range assembled {
			if inner := errors.Unwrap(e); inner != nil && strings.HasPrefix(e.Error(), full+": ") {
				list[i] = fragmentError(full, frags, inner)
			}
		}
	}
	if len(list) == 1 {
		return list[0]
	}
	return errors.Join(list...)
}
