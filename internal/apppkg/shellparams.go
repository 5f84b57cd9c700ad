package apppkg

import (
	"fmt"
	"maps"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// A command of cluster.json (a service's cmd, a health check, ...) runs
// through the node's shell as root. A parameter whose text lands in one
// unquoted, as OpenPitrix's {{.cluster.x}} inside a "cmd" string does,
// runs whatever the user typed: "$(id > /tmp/x)". Mustache templates
// insert strings as JSON literals, so there a string can only be a whole
// command ("cmd": {{x}}); Go templates print values raw anywhere. Neither
// form has a shell-quoting function, so the fix is the parameter's own
// constraint (a pattern or a range) or quotes it cannot close.
//
// checkShellParams finds such insertions by rendering the template once per
// parameter whose value may hold characters the shell acts on, with a
// marker as its value, and looking for the marker in the commands of the
// result: what decides is where the value lands, whatever the template did
// to get it there.

// commandFields are the cluster.json fields run by the shell.
var commandFields = []string{"cmd", "pre_check", "check_cmd", "action_cmd"}

// shellSafe are the characters no shell context gives a meaning to.
func shellSafe(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.,:/@%+=-", r)
}

// quoting is where in a shell command a character is.
type quoting int

const (
	unquoted quoting = iota
	singleQuoted
	doubleQuoted
)

// quotingAt is the quoting in effect at the end of prefix, as /bin/sh reads
// it. Substitutions nested in double quotes count as double-quoted: the
// characters that matter there matter in those too.
func quotingAt(prefix string) quoting {
	q := unquoted
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		switch {
		case q == singleQuoted:
			if c == '\'' {
				q = unquoted
			}
		case c == '\\':
			i++
		case q == doubleQuoted:
			if c == '"' {
				q = unquoted
			}
		case c == '\'':
			q = singleQuoted
		case c == '"':
			q = doubleQuoted
		}
	}
	return q
}

// dangerous reports whether a value that may hold the characters may is
// acted on by the shell when inserted with quoting q; it returns what to
// say about it.
func dangerous(q quoting, may func(rune) bool) (string, bool) {
	switch q {
	case singleQuoted:
		return "inside single quotes, which a ' in its value ends", may('\'')
	case doubleQuoted:
		return "inside double quotes, where $(…), `…` and \" in its value still act", may('$') || may('`') || may('"') || may('\\')
	}
	for _, r := range "$`\"'\\;&|<>()*?[]{}~#!\n\t " {
		if may(r) {
			return "without shell quoting", true
		}
	}
	return "", false
}

// valueChars returns what characters a parameter's value may hold, or nil
// when it cannot hold text (numbers, booleans) or only shell-safe text.
func valueChars(it *Item) func(rune) bool {
	if !isStringType(it.Type) && it.Type != TypeArray {
		return nil
	}
	var may func(rune) bool
	switch {
	case len(it.Range) > 0:
		var set []rune
		for _, r := range it.Range {
			set = append(set, []rune(stringForm(r))...)
		}
		if it.Multichoice {
			set = append(set, []rune(it.Separator)...)
		}
		may = func(r rune) bool { return slices.Contains(set, r) }
	case it.re != nil:
		may = patternChars(it.re)
	default:
		return func(rune) bool { return true }
	}
	for r := rune(0); r < 128; r++ {
		if !shellSafe(r) && may(r) {
			return may
		}
	}
	return nil
}

// patternChars reads a pattern as the set of characters a matching value
// may hold: only for a pattern anchored at both ends, otherwise any.
func patternChars(re *regexp.Regexp) func(rune) bool {
	anyChar := func(rune) bool { return true }
	tree, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil || !anchored(tree) {
		return anyChar
	}
	var ranges []rune // pairs lo, hi
	ok := true
	var walk func(*syntax.Regexp)
	walk = func(n *syntax.Regexp) {
		switch n.Op {
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			ok = false
		case syntax.OpLiteral:
			for _, r := range n.Rune {
				for f := r; ; {
					ranges = append(ranges, f, f)
					if f = unicode.SimpleFold(f); f == r || n.Flags&syntax.FoldCase == 0 {
						break
					}
				}
			}
		case syntax.OpCharClass:
			ranges = append(ranges, n.Rune...)
		}
		for _, s := range n.Sub {
			walk(s)
		}
	}
	walk(tree)
	if !ok {
		return anyChar
	}
	return func(r rune) bool {
		for i := 0; i+1 < len(ranges); i += 2 {
			if ranges[i] <= r && r <= ranges[i+1] {
				return true
			}
		}
		return false
	}
}

// anchored reports whether every match of n spans the whole value.
func anchored(n *syntax.Regexp) bool {
	switch n.Op {
	case syntax.OpCapture:
		return anchored(n.Sub[0])
	case syntax.OpAlternate:
		for _, s := range n.Sub {
			if !anchored(s) {
				return false
			}
		}
		return true
	case syntax.OpConcat:
		return len(n.Sub) >= 2 && n.Sub[0].Op == syntax.OpBeginText && n.Sub[len(n.Sub)-1].Op == syntax.OpEndText
	}
	return false
}

// commandUse is a marker found in a command.
type commandUse struct {
	field string // nodes[0].services.start.cmd
	key   string // cmd
	how   string // without shell quoting, ...
}

// maxShellProbes bounds the renders of checkShellParams beyond the first:
// a Go template may do a lot of work (limits.MaxTemplateWork) per render.
const maxShellProbes = 16

// probeParam is a parameter under probe and the characters its value may
// hold.
type probeParam struct {
	path, marker string
	may          func(rune) bool
}

// checkShellParams warns, naming the template line, about every parameter
// whose value reaches a command where the shell would act on it. v holds
// the default values the probes start from. All parameters are probed in
// one render; when the template does not take that (a value it parses, a
// marker where JSON wants a number), each is probed on its own, up to
// maxShellProbes.
func (p *Package) checkShellParams(v *Values, w *warnings) {
	var params []probeParam
	for i, path := range p.Config.order {
		if may := valueChars(p.Config.items[path]); may != nil {
			params = append(params, probeParam{path: path, marker: fmt.Sprintf("zzhangarprobe%dzz", i), may: may})
		}
	}
	if len(params) == 0 {
		return
	}
	if doc, ok := p.probe(v, params); ok {
		p.warnShellUses(doc, params, w)
		return
	}
	for i, pp := range params {
		if i == maxShellProbes {
			w.add("%s: parameters from %s on were not checked for insertion into commands: the template does not render with probe values in place of every parameter", p.templateName(), pp.path)
			return
		}
		if doc, ok := p.probe(v, params[i:i+1]); ok {
			p.warnShellUses(doc, params[i:i+1], w)
		}
	}
}

// probe renders the template with the params' markers as their values.
func (p *Package) probe(v *Values, params []probeParam) (any, bool) {
	vals := maps.Clone(v.vals)
	for _, pp := range params {
		if p.Config.items[pp.path].Type == TypeArray {
			vals[pp.path] = []any{pp.marker}
		} else {
			vals[pp.path] = pp.marker
		}
	}
	out, err := p.execute(&Values{cfg: v.cfg, vals: vals, set: v.set}, false)
	if err != nil {
		return nil, false
	}
	doc, err := decodeJSON("", out)
	return doc, err == nil
}

func (p *Package) warnShellUses(doc any, params []probeParam, w *warnings) {
	for _, pp := range params {
		for _, u := range findMarker(doc, "", pp.marker, pp.may) {
			w.add("%s: %sparameter %s is inserted into %s %s: a value such as $(id) would run as a shell command on the node. Limit its values with a pattern admitting only safe characters (such as ^[A-Za-z0-9._-]*$) or a range",
				p.templateName(), linesOf(p.paramLines(pp.path, u.key)), pp.path, u.field, u.how)
		}
	}
}

// findMarker walks a rendered cluster.json for commands holding marker
// where the shell would act on a value holding may's characters. Values
// (env, service_params) are data, not commands, and are not searched.
func findMarker(n any, path, marker string, may func(rune) bool) []commandUse {
	var out []commandUse
	switch x := n.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			child := childPath(path, k)
			if s, ok := x[k].(string); ok && slices.Contains(commandFields, k) {
				out = append(out, markerIn(s, child, k, marker, may)...)
				continue
			}
			if k == "env" || k == GroupServiceParams {
				continue
			}
			out = append(out, findMarker(x[k], child, marker, may)...)
		}
	case []any:
		for i, e := range x {
			out = append(out, findMarker(e, fmt.Sprintf("%s[%d]", path, i), marker, may)...)
		}
	}
	return out
}

func markerIn(cmd, field, key, marker string, may func(rune) bool) []commandUse {
	var out []commandUse
	seen := map[string]bool{}
	for off := 0; ; {
		i := strings.Index(cmd[off:], marker)
		if i < 0 {
			return out
		}
		at := off + i
		if how, bad := dangerous(quotingAt(cmd[:at]), may); bad && !seen[how] {
			seen[how] = true
			out = append(out, commandUse{field: field, key: key, how: how})
		}
		off = at + len(marker)
	}
}

// paramLines finds the template lines that insert the parameter at path,
// preferring those that also hold the command's key: JSON strings do not
// span lines, so the insertion into a command is on the command's line.
func (p *Package) paramLines(path, key string) []int {
	var ref *regexp.Regexp
	if p.TemplateKind == KindGoTemplate {
		ref = regexp.MustCompile(`\.` + regexp.QuoteMeta(path) + `(?:[^A-Za-z0-9_]|$)`)
	} else {
		ref = regexp.MustCompile(`\{\{\{?[&\s]*` + regexp.QuoteMeta(path) + `\s*\}`)
	}
	keyRe := regexp.MustCompile(`"` + regexp.QuoteMeta(key) + `"\s*:`)
	var all, withKey []int
	for n, line := range strings.Split(p.Template, "\n") {
		if !ref.MatchString(line) {
			continue
		}
		all = append(all, n+1)
		if keyRe.MatchString(line) {
			withKey = append(withKey, n+1)
		}
	}
	if len(withKey) > 0 {
		return withKey
	}
	return all
}

// linesOf formats lines as "line 3: " or "lines 3, 9: ".
func linesOf(lines []int) string {
	if len(lines) == 0 {
		return ""
	}
	sort.Ints(lines)
	s := make([]string, len(lines))
	for i, n := range lines {
		s[i] = strconv.Itoa(n)
	}
	if len(s) == 1 {
		return "line " + s[0] + ": "
	}
	return "lines " + strings.Join(s, ", ") + ": "
}
