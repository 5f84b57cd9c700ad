package apppkg

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/cbroglie/mustache"

	"github.com/hangarhq/hangar/internal/limits"
)

// tagUse is one distinct tag of cluster.json.mustache.
type tagUse struct {
	name string
	line int
}

// Render renders the cluster template with the values and parses the
// result strictly into a ClusterSpec.
func (p *Package) Render(v *Values) (*ClusterSpec, error) {
	if v == nil || v.cfg != p.Config {
		return nil, errors.New("render: the values were not resolved by this package")
	}
	spec, err := p.render(v, false)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", p.templateName(), err)
	}
	return spec, nil
}

func (p *Package) render(v *Values, lint bool) (*ClusterSpec, error) {
	out, err := p.execute(v, false)
	if err != nil {
		return nil, err
	}
	spec, err := specFromJSON(out, lint)
	if err != nil {
		return nil, err
	}
	p.probeParams(v, spec)
	spec.rendered = out
	return spec, nil
}

// specFromJSON turns what a cluster template rendered to into the checked
// spec.
func specFromJSON(out []byte, lint bool) (*ClusterSpec, error) {
	spec, err := decodeSpec(out)
	if err != nil {
		return nil, err
	}
	if spec.VXNet == "" {
		spec.VXNet = spec.Subnet
	}
	normalize(spec)
	if err := checkSpec(spec, lint); err != nil {
		return nil, err
	}
	return spec, nil
}

func (p *Package) compile() error {
	if p.TemplateKind == KindGoTemplate {
		return p.compileGo()
	}
	return p.compileMustache()
}

// noPartials refuses every partial: a package's template must not read
// files from pilot's disk.
type noPartials struct{}

func (noPartials) Get(name string) (string, error) {
	return "", fmt.Errorf("partial %q: partials are not supported", name)
}

func (p *Package) compileMustache() error {
	// forceRaw: values are pre-encoded JSON literals and must not be
	// HTML-escaped.
	t, err := mustache.ParseStringPartialsRaw(p.Template, noPartials{}, true)
	if err != nil {
		return fmt.Errorf("%s: %w", fileMustache, err)
	}
	t.Escape(func(s string) string { return s })
	lines := tagLines(p.Template)
	seen := map[string]bool{}
	var errs []error
	for _, tag := range t.Tags() {
		name := tag.Name()
		where := fmt.Sprintf("%s: line %d", fileMustache, lines[name])
		if lines[name] == 0 {
			where = fileMustache
		}
		if strings.ContainsAny(name, " \t\r\n{}") {
			errs = append(errs, fmt.Errorf("%s: malformed tag {{%.40s: a missing \"}}\"?", where, name))
			continue
		}
		if tag.Type() != mustache.Variable {
			errs = append(errs, fmt.Errorf("%s: %s tag %q: only plain {{path}} tags are supported (no sections or partials)", where, strings.ToLower(tag.Type().String()), name))
			continue
		}
		if _, ok := p.Config.items[name]; !ok {
			errs = append(errs, fmt.Errorf("%s: tag {{%s}}: %w", where, name, p.Config.unknownParam(name, "")))
			continue
		}
		if !seen[name] {
			seen[name] = true
			p.tags = append(p.tags, tagUse{name: name, line: lines[name]})
		}
	}
	// The library reads "a.b" as key b inside a; so {{env.a}} and
	// {{env.a.b}} would need env.a to be a value and an object at once.
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	for i := 0; i+1 < len(names); i++ {
		if strings.HasPrefix(names[i+1], names[i]+".") {
			errs = append(errs, fmt.Errorf("%s: tags {{%s}} and {{%s}} cannot both be used: mustache reads dots as nesting", fileMustache, names[i], names[i+1]))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	p.mustache = t
	return nil
}

// tagLines finds the first line of each tag name, for error messages.
func tagLines(text string) map[string]int {
	out := map[string]int{}
	line := 1
	for i := 0; i < len(text); i++ {
		if text[i] == '\n' {
			line++
			continue
		}
		if !strings.HasPrefix(text[i:], "{{") {
			continue
		}
		end := strings.Index(text[i+2:], "}}")
		if end < 0 {
			break
		}
		inner := strings.TrimSpace(text[i+2 : i+2+end])
		inner = strings.TrimSpace(strings.TrimRight(strings.TrimLeft(inner, "{&#^/>!"), "}"))
		if _, ok := out[inner]; !ok {
			out[inner] = line
		}
		line += strings.Count(text[i:i+2+end], "\n")
		i += 1 + end + 2
	}
	return out
}

// goTagOpen and goTagClose find the quotes around OpenPitrix's tags.
var goTagOpen, goTagClose = regexp.MustCompile(`"\{\{`), regexp.MustCompile(`\}\}"`)

func (p *Package) compileGo() error {
	// OpenPitrix turns "{{X}}" into {{getv X}}, which writes X as a JSON
	// literal; unquoted tags print Go's own formatting.
	// The parentheses let X be a pipeline ("{{index .env "a-b"}}").
	text := goTagOpen.ReplaceAllString(p.Template, "{{ getv (")
	text = goTagClose.ReplaceAllString(text, ") }}")
	t, err := template.New(fileGoTmpl).Option("missingkey=error").Funcs(placeholderFuncs()).Parse(text)
	if err != nil {
		return fmt.Errorf("%s: %w", fileGoTmpl, err)
	}
	meter(t)
	p.gotmpl = t
	return nil
}

func getv(v any) string {
	if v == nil {
		return "null"
	}
	return jsonLiteral(v)
}

// paramProbe marks a service_params value so the rendered spec tells which
// parameter each service param carries. NUL cannot occur in a user's value.
const paramProbe = "\x00hangar-param:"

// execute renders the template. With probe, service_params tags render as
// markers instead of values.
func (p *Package) execute(v *Values, probe bool) ([]byte, error) {
	if p.TemplateKind == KindGoTemplate {
		ctx := map[string]any{}
		for _, g := range p.Config.Groups {
			ctx[g.Key] = map[string]any{}
		}
		for path, val := range v.vals {
			it := p.Config.items[path]
			m := ctx[it.Group].(map[string]any)
			if it.Role != "" {
				rm, ok := m[it.Role].(map[string]any)
				if !ok {
					rm = map[string]any{}
					m[it.Role] = rm
				}
				m = rm
			}
			m[it.Key] = val
		}
		return p.executeGo(ctx)
	}
	ctx := map[string]any{}
	for _, u := range p.tags {
		parts := strings.Split(u.name, ".")
		m := ctx
		for _, part := range parts[:len(parts)-1] {
			next, ok := m[part].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[part] = next
			}
			m = next
		}
		lit, ok := v.literal(u.name)
		if !ok {
			return nil, fmt.Errorf("line %d: tag {{%s}} has no value", u.line, u.name)
		}
		if probe && strings.HasPrefix(u.name, GroupServiceParams+".") {
			lit = jsonLiteral(paramProbe + u.name)
		}
		m[parts[len(parts)-1]] = lit
	}
	out := &limitedBuffer{max: limits.MaxClusterSpecBytes}
	err := p.mustache.FRender(out, ctx)
	if out.over {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// probeParams fills Service.ParamPaths by rendering once more with markers
// in place of service_params values. A template that puts such a value
// where a marker string does not fit simply gets no paths; ServiceArgs then
// matches parameters by name.
func (p *Package) probeParams(v *Values, spec *ClusterSpec) {
	if p.TemplateKind != KindMustache {
		return
	}
	uses := false
	for _, u := range p.tags {
		uses = uses || strings.HasPrefix(u.name, GroupServiceParams+".")
	}
	if !uses {
		return
	}
	out, err := p.execute(v, true)
	if err != nil {
		return
	}
	var probe struct {
		Nodes []struct {
			Services map[string]struct {
				ServiceParams map[string]any `json:"service_params"`
			} `json:"services"`
		} `json:"nodes"`
	}
	if json.Unmarshal(out, &probe) != nil || len(probe.Nodes) != len(spec.Nodes) {
		return
	}
	for i, n := range probe.Nodes {
		for name, svc := range n.Services {
			for param, val := range svc.ServiceParams {
				s, ok := val.(string)
				path, found := strings.CutPrefix(s, paramProbe)
				if !ok || !found {
					continue
				}
				real, ok := spec.Nodes[i].Services[name]
				if !ok {
					continue
				}
				if real.ParamPaths == nil {
					real.ParamPaths = map[string]string{}
				}
				real.ParamPaths[param] = path
				spec.Nodes[i].Services[name] = real
			}
		}
	}
}
