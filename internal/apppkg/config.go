package apppkg

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
)

// Parameter groups of config.json.
const (
	GroupCluster       = "cluster"
	GroupEnv           = "env"
	GroupServiceParams = "service_params"
)

// Parameter types of config.json.
const (
	TypeInteger      = "integer"
	TypeNumber       = "number"
	TypeBoolean      = "boolean"
	TypeString       = "string"
	TypePassword     = "password"
	TypeArray        = "array"
	TypeService      = "service"
	TypeLoadbalancer = "loadbalancer"
	TypeAccessKey    = "accesskey"
	TypeVXNet        = "vxnet"
	TypeEIP          = "eip"
)

// ItemTypes returns the parameter types config.json may use.
func ItemTypes() []string {
	return []string{TypeInteger, TypeNumber, TypeBoolean, TypeString, TypePassword, TypeArray,
		TypeService, TypeLoadbalancer, TypeAccessKey, TypeVXNet, TypeEIP}
}

// Config is a parsed config.json: the parameters a user may set.
type Config struct {
	// Groups are the top-level groups (cluster, env, service_params) in file
	// order. Their Properties hold items and role arrays.
	Groups []*Item
	// Raw is config.json as the package ships it, for clients that render
	// forms and flags from it.
	Raw []byte

	items map[string]*Item // leaf items by path
	order []string         // leaf paths in file order
}

// Item is one entry of config.json: a group, a role array or a parameter.
type Item struct {
	Key         string
	Path        string // "env.port", "cluster.master.count"; for groups and roles the prefix ("env", "cluster.master")
	Group       string // cluster, env or service_params
	Role        string // the role array the item is in; "" for common items
	Label       string
	Description string
	Type        string
	Default     any  // decoded JSON (numbers as json.Number); nil when absent
	HasDefault  bool // Default was given (it may be JSON null)
	Required    bool
	Range       []any
	Multichoice bool
	Separator   string // for multichoice; "," when not given
	Min, Max    *float64
	Step        *float64
	Pattern     string
	Changeable  bool // false: fixed after the cluster is created
	Limits      map[string][]string
	// Form holds the fields only the dashboard's form uses (expanded,
	// system, resource_group, dependencies, auto_scale_step,
	// changeable_when_create, allowed_operations, tag, port), as given.
	Form       map[string]json.RawMessage
	Properties []*Item // for groups and role arrays
	// Line is where the item starts in config.json (0: unknown).
	Line int
	// Dependencies say when the parameter applies (see Dependency).
	Dependencies []Dependency
	// FixedAtCreate (changeable_when_create: false): the user cannot give
	// it at create; its default is used.
	FixedAtCreate bool

	re *regexp.Regexp // compiled Pattern; nil when not enforced
}

// IsRole reports whether the item is a role array inside a group.
func (it *Item) IsRole() bool {
	return it.Group != "" && it.Role != "" && it.Path == it.Group+"."+it.Role
}

// Item returns the parameter at path ("env.port", "cluster.master.cpu").
func (c *Config) Item(path string) (*Item, bool) {
	it, ok := c.items[path]
	return it, ok
}

// Items returns every parameter in file order.
func (c *Config) Items() []*Item {
	out := make([]*Item, 0, len(c.order))
	for _, p := range c.order {
		out = append(out, c.items[p])
	}
	return out
}

// Roles returns the role arrays of the cluster group in file order.
func (c *Config) Roles() []string {
	var out []string
	for _, g := range c.Groups {
		if g.Key != GroupCluster {
			continue
		}
		for _, it := range g.Properties {
			if it.Properties != nil {
				out = append(out, it.Key)
			}
		}
	}
	return out
}

// isFormField reports the item fields only the dashboard's form uses.
func isFormField(k string) bool {
	switch k {
	case "expanded", "system", "resource_group", "dependencies", "auto_scale_step",
		"changeable_when_create", "allowed_operations", "tag", "port":
		return true
	}
	return false
}

const allowedItemFields = "key, label, description, type, default, required, range, multichoice, separator, " +
	"min, max, step, pattern, changeable, limits, properties, and for the form: expanded, system, " +
	"resource_group, dependencies, auto_scale_step, changeable_when_create, allowed_operations, tag, port"

func parseConfig(data []byte, w *warnings) (*Config, error) {
	root, err := decodeJSON(fileConfig, data)
	if err != nil {
		return nil, err
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf(`%s: the root must be an object {"type": "array", "properties": [...]}, got %s`, fileConfig, jsonKind(root))
	}
	for k := range obj {
		if k != "type" && k != "properties" {
			return nil, fmt.Errorf(`%s: root: unknown field %q; allowed: type, properties`, fileConfig, k)
		}
	}
	if t, _ := obj["type"].(string); t != TypeArray {
		return nil, fmt.Errorf(`%s: root: "type" must be "array"`, fileConfig)
	}
	props, ok := obj["properties"].([]any)
	if !ok {
		return nil, fmt.Errorf(`%s: root: "properties" must be an array of groups (cluster, env, service_params)`, fileConfig)
	}
	c := &Config{Raw: append([]byte(nil), data...), items: map[string]*Item{}}
	lines := jsonLines(data)
	seenGroups := map[string]bool{}
	var errs []error
	for i, raw := range props {
		where := fmt.Sprintf("properties[%d]", i)
		g, err := parseItem(where, where, raw, lines, w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch g.Key {
		case GroupCluster, GroupEnv, GroupServiceParams:
		default:
			return nil, fmt.Errorf("%s: %s: unknown group %q; allowed: cluster, env, service_params", fileConfig, where, g.Key)
		}
		if seenGroups[g.Key] {
			return nil, fmt.Errorf("%s: group %q appears twice", fileConfig, g.Key)
		}
		seenGroups[g.Key] = true
		if g.Type != TypeArray || g.Properties == nil {
			return nil, fmt.Errorf(`%s: group %q: must be {"type": "array", "properties": [...]}`, fileConfig, g.Key)
		}
		g.Path, g.Group = g.Key, g.Key
		if err := c.addGroup(g, w); err != nil {
			errs = append(errs, err)
			continue
		}
		c.Groups = append(c.Groups, g)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := c.resolveDependencies(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) addGroup(g *Item, w *warnings) error {
	var errs []error
	fail := func(err error) { errs = append(errs, err) }
	commonKeys := map[string]bool{}
	for _, it := range g.Properties {
		if it.Properties == nil {
			commonKeys[it.Key] = true
		}
	}
	for _, it := range g.Properties {
		it.Group = g.Key
		if it.Properties == nil {
			it.Path = g.Key + "." + it.Key
			if err := c.addLeaf(it, w); err != nil {
				fail(err)
			}
			continue
		}
		// A role array.
		if it.Type != TypeArray {
			return fmt.Errorf(`%s: %s.%s: an item with properties must have "type": "array"`, fileConfig, g.Key, it.Key)
		}
		if commonKeys[it.Key] {
			return fmt.Errorf("%s: %s.%s: used both as a parameter and as a role; {{%s.%s}} would be ambiguous", fileConfig, g.Key, it.Key, g.Key, it.Key)
		}
		if strings.HasSuffix(it.Key, "-replica") {
			return fmt.Errorf(`%s: %s.%s: role names ending in "-replica" are reserved for replicas`, fileConfig, g.Key, it.Key)
		}
		it.Path, it.Role = g.Key+"."+it.Key, it.Key
		for _, leaf := range it.Properties {
			if leaf.Properties != nil {
				return fmt.Errorf("%s: %s.%s.%s: items nest at most group.role.item deep", fileConfig, g.Key, it.Key, leaf.Key)
			}
			leaf.Group, leaf.Role = g.Key, it.Key
			leaf.Path = it.Path + "." + leaf.Key
			if err := c.addLeaf(leaf, w); err != nil {
				fail(err)
			}
		}
	}
	return errors.Join(errs...)
}

func (c *Config) addLeaf(it *Item, w *warnings) error {
	if prev, dup := c.items[it.Path]; dup {
		what := "twice"
		if prev.Role != it.Role {
			what = fmt.Sprintf("twice (once in role %q, once as a common key)", firstNonEmpty(prev.Role, it.Role))
		}
		return fmt.Errorf("%s: parameter %s is declared %s", fileConfig, it.Path, what)
	}
	if err := checkItem(it, w); err != nil {
		if it.Line > 0 {
			return fmt.Errorf("%s: line %d: parameter %s: %w", fileConfig, it.Line, it.Path, err)
		}
		return fmt.Errorf("%s: parameter %s: %w", fileConfig, it.Path, err)
	}
	c.items[it.Path] = it
	c.order = append(c.order, it.Path)
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// parseItem reads one config.json entry and, recursively, its properties.
// parseItem parses the item at jpath (its path in the JSON document, for
// line numbers); where names it in errors.
func parseItem(where, jpath string, raw any, lines map[string]int, w *warnings) (*Item, error) {
	it := &Item{Changeable: true, Separator: ",", Line: lines[jpath]}
	if it.Line > 0 {
		where = fmt.Sprintf("line %d: %s", it.Line, where)
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: %s: want an object, got %s", fileConfig, where, jsonKind(raw))
	}
	key, ok := obj["key"].(string)
	if !ok || key == "" {
		return nil, fmt.Errorf(`%s: %s: missing "key" (a non-empty string)`, fileConfig, where)
	}
	it.Key = key
	where = fmt.Sprintf("%s (key %q)", where, key)
	if strings.ContainsAny(key, " \t\r\n/{}") || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
		return nil, fmt.Errorf("%s: %s: key must not contain spaces, '/', '{', '}' or empty dot-separated parts", fileConfig, where)
	}
	typ, ok := obj["type"].(string)
	if !ok || typ == "" {
		return nil, fmt.Errorf(`%s: %s: missing "type"; allowed: %s`, fileConfig, where, strings.Join(ItemTypes(), ", "))
	}
	if !contains(ItemTypes(), typ) {
		return nil, fmt.Errorf("%s: %s: unknown type %q; allowed: %s", fileConfig, where, typ, strings.Join(ItemTypes(), ", "))
	}
	it.Type = typ

	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var childErrs []error
	for _, k := range keys {
		v := obj[k]
		var err error
		switch k {
		case "key", "type":
		case "label":
			it.Label, err = asString(v)
		case "description":
			it.Description, err = asString(v)
		case "default":
			it.Default, it.HasDefault = v, true
		case "required":
			it.Required, err = asRequired(v)
		case "range":
			r, ok := v.([]any)
			if !ok {
				err = fmt.Errorf("want an array of allowed values, got %s", jsonKind(v))
			}
			it.Range = r
		case "multichoice":
			it.Multichoice, err = asBool(v)
		case "separator":
			it.Separator, err = asString(v)
			if err == nil && it.Separator == "" {
				err = fmt.Errorf("must not be empty")
			}
		case "min":
			it.Min, err = asNumber(v)
		case "max":
			it.Max, err = asNumber(v)
		case "step":
			it.Step, err = asNumber(v)
			if err == nil && *it.Step <= 0 {
				err = fmt.Errorf("must be greater than 0")
			}
		case "pattern":
			it.Pattern, err = asString(v)
		case "changeable":
			it.Changeable, err = asBool(v)
		case "limits":
			it.Limits, err = asLimits(v)
		case "properties":
			props, ok := v.([]any)
			if !ok {
				err = fmt.Errorf("want an array of items, got %s", jsonKind(v))
				break
			}
			it.Properties = []*Item{}
			seen := map[string]bool{}
			for i, p := range props {
				child, cerr := parseItem(fmt.Sprintf("%s.properties[%d]", strings.TrimPrefix(where, fmt.Sprintf("line %d: ", it.Line)), i), fmt.Sprintf("%s.properties[%d]", jpath, i), p, lines, w)
				if cerr != nil {
					// Go on with the other items: an author sees every
					// problem at once.
					childErrs = append(childErrs, cerr)
					continue
				}
				if seen[child.Key] {
					childErrs = append(childErrs, fmt.Errorf("%s: %s: key %q appears twice", fileConfig, where, child.Key))
					continue
				}
				seen[child.Key] = true
				it.Properties = append(it.Properties, child)
			}
		default:
			if !isFormField(k) {
				return nil, fmt.Errorf("%s: %s: unknown field %q; allowed: %s", fileConfig, where, k, allowedItemFields)
			}
			b, merr := json.Marshal(v)
			if merr != nil {
				err = merr
				break
			}
			if it.Form == nil {
				it.Form = map[string]json.RawMessage{}
			}
			it.Form[k] = b
			switch k {
			case "dependencies":
				it.Dependencies, err = parseDependencies(b)
			case "changeable_when_create":
				var ok bool
				ok, err = asBool(v)
				it.FixedAtCreate = err == nil && !ok
			}
		}
		if err != nil {
			at := where
			if l := lines[jpath+"."+k]; l > 0 {
				at = fmt.Sprintf("line %d: %s", l, strings.TrimPrefix(where, fmt.Sprintf("line %d: ", it.Line)))
			}
			return nil, fmt.Errorf("%s: %s: %s: %w", fileConfig, at, k, err)
		}
	}
	if len(childErrs) > 0 {
		return nil, errors.Join(childErrs...)
	}
	return it, nil
}

// checkItem validates a parameter's own declaration: its pattern, bounds
// and default.
func checkItem(it *Item, w *warnings) error {
	if it.Pattern != "" {
		re, err := regexp.Compile(it.Pattern)
		switch {
		case err == nil:
			it.re = re
		case browserOnlyPattern(err):
			// Patterns are written for the browser's regexp engine; Go's
			// has no look-around or back-references. Refusing the package
			// for that would block otherwise valid apps, so say clearly
			// that the pattern is not checked.
			w.add("config.json %s: pattern %q uses look-around or a back-reference, which Go's (RE2) syntax lacks; it is not enforced: %v", it.Path, it.Pattern, err)
		default:
			return fmt.Errorf("pattern %q does not compile: %v", it.Pattern, err)
		}
	}
	if it.Min != nil && it.Max != nil && *it.Min > *it.Max {
		return fmt.Errorf("min %v is greater than max %v", *it.Min, *it.Max)
	}
	if (it.Min != nil || it.Max != nil || it.Step != nil) && it.Type != TypeInteger && it.Type != TypeNumber {
		return fmt.Errorf("min, max and step apply only to integer and number items, not %s", it.Type)
	}
	if it.Multichoice && !isStringType(it.Type) {
		return fmt.Errorf("multichoice applies only to string items, not %s", it.Type)
	}
	if it.Multichoice && len(it.Range) == 0 {
		return fmt.Errorf("multichoice needs a range to choose from")
	}
	for i, r := range it.Range {
		if _, err := fromJSON(it, r); err != nil {
			return fmt.Errorf("range[%d]: %w", i, err)
		}
	}
	if it.HasDefault && it.Default != nil {
		v, err := fromJSON(it, it.Default)
		if err != nil {
			return fmt.Errorf("default: %w", err)
		}
		if err := checkValue(it, v); err != nil {
			w.add("config.json %s: the default does not pass its own checks (%v); a cluster using it is refused", it.Path, err)
		}
	} else if !it.Required && it.Group != GroupServiceParams {
		w.add("config.json %s: no default and not required; when unset it renders as %s", it.Path, zeroLiteral(it))
	}
	return nil
}

// browserOnlyPattern reports a compile error caused by what a browser's
// regexp engine has and RE2 lacks: look-around ((?=, (?!, (?<=, (?<!) and
// back-references (\1).
func browserOnlyPattern(err error) bool {
	var se *syntax.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case syntax.ErrInvalidPerlOp:
		return strings.HasPrefix(se.Expr, "(?=") || strings.HasPrefix(se.Expr, "(?!") || strings.HasPrefix(se.Expr, "(?<")
	case syntax.ErrInvalidEscape:
		return len(se.Expr) == 2 && se.Expr[1] >= '1' && se.Expr[1] <= '9'
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func asString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %s", jsonKind(v))
	}
	return s, nil
}

func asBool(v any) (bool, error) {
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		switch strings.ToLower(b) {
		case "true", "yes":
			return true, nil
		case "false", "no":
			return false, nil
		}
	}
	return false, fmt.Errorf("want true or false, got %s %v", jsonKind(v), v)
}

// asRequired accepts AppCenter's "yes"/"no" and OpenPitrix's booleans.
func asRequired(v any) (bool, error) {
	b, err := asBool(v)
	if err != nil {
		return false, fmt.Errorf(`want "yes", "no", true or false, got %s %v`, jsonKind(v), v)
	}
	return b, nil
}

func asNumber(v any) (*float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, fmt.Errorf("want a number, got %s", jsonKind(v))
	}
	f, err := n.Float64()
	if err != nil {
		return nil, fmt.Errorf("want a number: %w", err)
	}
	return &f, nil
}

func asLimits(v any) (map[string][]string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf(`want {"app-id": ["appv-id", ...]}, got %s`, jsonKind(v))
	}
	out := map[string][]string{}
	for app, vs := range obj {
		list, ok := vs.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an array of app version ids, got %s", app, jsonKind(vs))
		}
		out[app] = []string{}
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%s: want app version ids (strings), got %s", app, jsonKind(x))
			}
			out[app] = append(out[app], s)
		}
	}
	return out, nil
}
