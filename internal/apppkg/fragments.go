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

// templateError is a confd template that does not parse: its file
// (confd/templates/…), line and what is wrong.
type templateError struct {
	file string
	line int // 0: unknown
	msg  string
}

func (e *templateError) Error() string {
	if e.line == 0 {
		return e.file + ": " + e.msg
	}
	return fmt.Sprintf("%s: line %d: %s", e.file, e.line, e.msg)
}

// templateParseRe reads text/template's "template: NAME:LINE[:COL]: MSG".
var templateParseRe = regexp.MustCompile(`^template: [^:]*:(\d+)(?::\d+)?: (.*)$`)

// newTemplateError names file and, where text/template gives it, the line
// of a parse error.
func newTemplateError(file string, err error) *templateError {
	m := templateParseRe.FindStringSubmatch(err.Error())
	if m == nil {
		return &templateError{file: file, msg: err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	return &templateError{file: file, line: line, msg: m[2]}
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
		te, ok := e.(*templateError)
		if !ok {
			continue
		}
		frags, ok := assembled[te.file]
		if !ok {
			continue
		}
		mapped := *te
		mapped.line = 0
		for _, f := range frags {
			if te.line >= f.first && te.line < f.first+f.lines {
				mapped.file, mapped.line = f.name, te.line-f.first+1
			}
		}
		if mapped.line == 0 {
			mapped.msg = fmt.Sprintf("(assembled from %s/): %s", strings.TrimSuffix(te.file, ".tmpl"), te.msg)
		}
		list[i] = &mapped
	}
	if len(list) == 1 {
		return list[0]
	}
	return errors.Join(list...)
}
