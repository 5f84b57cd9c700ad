package apppkg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Values are the parameters of one cluster, checked against config.json,
// typed and completed with defaults. They are immutable: ChangeEnv returns
// new Values.
type Values struct {
	cfg *Config
	// vals holds every parameter by path: int64 (integer), float64
	// (number), bool (boolean), string (string-like types) or []any (array,
	// loadbalancer).
	vals map[string]any
	// set is true for values given or defaulted, false for those filled
	// with the type's zero value because config.json has no default.
	set map[string]bool
}

// PlatformNetwork is the value of the parameters that name the cluster's
// network (type vxnet, and cluster.vxnet or OpenPitrix's cluster.subnet):
// the platform chooses the network, not the user. Pilot puts every cluster
// of a runtime in that runtime's network named "default"; the metadata's
// /cluster/vxnet holds its id.
const PlatformNetwork = "default"

// Platform reports a parameter whose value the platform sets: the
// cluster's network. AppCenter packages declare cluster.vxnet required
// with an empty default, for the console to fill.
func (it *Item) Platform() bool {
	if it.Type == TypeVXNet {
		return true
	}
	return it.Group == GroupCluster && it.Role == "" && (it.Key == "vxnet" || it.Key == "subnet")
}

type resolveMode int

const (
	resolveCreate resolveMode = iota
	// resolveLint renders a package with its defaults: required parameters
	// without defaults get zero values, and defaults that fail their own
	// checks are used anyway (load has already warned about them).
	resolveLint
)

// Resolve validates user parameters against config.json and fills defaults.
// Keys are paths: "cluster.name", "cluster.<role>.count", "cluster.<role>.cpu",
// "env.<key>", "env.<role>.<key>", "service_params.<key>",
// "service_params.<role>.<key>". Values are strings (from the CLI or REST)
// converted by the parameter's type. Every problem is reported, each naming
// its parameter. Required service_params are not demanded here: they are
// given when the service runs (see ServiceArgs).
//
// Resolve(v.Strings()) gives back the same Values, so stored values can be
// reloaded.
func (p *Package) Resolve(params map[string]string) (*Values, error) {
	return p.resolve(params, resolveCreate)
}

func (p *Package) resolve(params map[string]string, mode resolveMode) (*Values, error) {
	c := p.Config
	v := &Values{cfg: c, vals: map[string]any{}, set: map[string]bool{}}
	var errs []error
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		it, ok := c.items[k]
		if !ok {
			errs = append(errs, c.unknownParam(k, ""))
			continue
		}
		if it.Platform() {
			if params[k] != PlatformNetwork {
				errs = append(errs, fmt.Errorf("%s: set by Hangar, not by you: it is the cluster's network (%q); leave it out", k, PlatformNetwork))
			}
			continue
		}
		val, err := parseValue(it, params[k])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if it.FixedAtCreate && mode == resolveCreate && !isDefault(it, val) {
			errs = append(errs, fmt.Errorf("%s: fixed by the app (changeable_when_create: false); leave it out, and its default is used", k))
			continue
		}
		v.vals[k], v.set[k] = val, true
	}
	// Required parameters without a value, or whose default is empty: refused
	// unless their dependencies do not hold.
	var missing, emptyDefault []*Item
	for _, path := range c.order {
		if _, given := v.vals[path]; given {
			continue
		}
		it := c.items[path]
		if it.Platform() {
			v.vals[path], v.set[path] = PlatformNetwork, true
			continue
		}
		if it.HasDefault && it.Default != nil {
			val, err := fromJSON(it, it.Default)
			if err == nil && mode == resolveCreate {
				err = checkValue(it, val)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: default from config.json: %w", path, err))
				continue
			}
			// A required value is required whether it comes from the user or
			// from the default: an empty one is refused here, at create, and
			// not later by a re-resolve of the stored values.
			if it.Required && isStringType(it.Type) && val == "" && it.Group != GroupServiceParams && mode == resolveCreate {
				emptyDefault = append(emptyDefault, it)
			}
			v.vals[path], v.set[path] = val, true
			continue
		}
		if it.Required && it.Group != GroupServiceParams && mode == resolveCreate {
			missing = append(missing, it)
		}
		v.vals[path], v.set[path] = zeroValue(it), false
	}
	lookup := func(path string) (string, bool) {
		x, ok := v.vals[path]
		return stringForm(x), ok
	}
	for _, it := range missing {
		if ok, _ := it.applies(lookup); ok {
			errs = append(errs, fmt.Errorf("%s: required, and config.json gives no default", it.Path))
		}
	}
	for _, it := range emptyDefault {
		if ok, _ := it.applies(lookup); ok {
			errs = append(errs, fmt.Errorf("%s: required, and config.json's default is empty: give a value", it.Path))
		}
	}
	for _, k := range keys {
		it, ok := c.items[k]
		if !ok || len(it.Dependencies) == 0 || mode != resolveCreate {
			continue
		}
		if val, given := v.vals[k]; given && !isDefault(it, val) {
			if ok, why := it.applies(lookup); !ok {
				errs = append(errs, fmt.Errorf("%s; leave it out", why))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return v, nil
}

// isDefault reports whether val is what the parameter takes when not
// given: its default, or its type's zero value. Stored values are given
// back in full when a cluster's values are resolved again, so a value the
// user may not give is accepted when it is that.
func isDefault(it *Item, val any) bool {
	def := zeroValue(it)
	if it.HasDefault && it.Default != nil {
		d, err := fromJSON(it, it.Default)
		if err != nil {
			return false
		}
		def = d
	}
	return stringForm(def) == stringForm(val)
}

// parseValue converts a user-given string and checks it.
func parseValue(it *Item, s string) (any, error) {
	val, err := fromString(it, s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", it.Path, err)
	}
	if it.Required && isStringType(it.Type) && s == "" && it.Group != GroupServiceParams {
		return nil, fmt.Errorf("%s: required; must not be empty", it.Path)
	}
	if err := checkValue(it, val); err != nil {
		return nil, fmt.Errorf("%s: %w", it.Path, err)
	}
	return val, nil
}

// unknownParam names a key config.json does not declare and suggests
// close ones.
func (c *Config) unknownParam(key, prefix string) error {
	shown := strings.TrimPrefix(key, prefix)
	var hints []string
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer(".", "", "_", "", "-", "").Replace(s))
	}
	last := key[strings.LastIndexByte(key, '.')+1:]
	for _, path := range c.order {
		if prefix != "" && !strings.HasPrefix(path, prefix) {
			continue
		}
		if norm(path) == norm(key) || strings.HasSuffix(path, "."+last) {
			hints = append(hints, strings.TrimPrefix(path, prefix))
		}
	}
	msg := fmt.Sprintf("unknown parameter %q: config.json does not declare it", shown)
	if prefix == "" && !strings.HasPrefix(key, GroupCluster+".") && !strings.HasPrefix(key, GroupEnv+".") &&
		!strings.HasPrefix(key, GroupServiceParams+".") {
		msg += "; parameter paths start with cluster., env. or service_params."
	}
	if len(hints) > 3 {
		hints = hints[:3]
	}
	if len(hints) > 0 {
		msg += " (did you mean " + strings.Join(hints, ", ") + "?)"
	}
	return errors.New(msg)
}

// ChangeEnv returns new Values with env changes applied. Keys are relative
// to env: "port" or "<role>.<key>". It refuses unknown keys, parameters
// declared changeable=false, and bad values, naming each.
func (v *Values) ChangeEnv(changes map[string]string) (*Values, error) {
	nv := v.clone()
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		path := GroupEnv + "." + k
		it, ok := v.cfg.items[path]
		if !ok {
			errs = append(errs, fmt.Errorf("env: %w", v.cfg.unknownParam(path, GroupEnv+".")))
			continue
		}
		if !it.Changeable {
			errs = append(errs, fmt.Errorf("env %s: cannot be changed after the cluster is created (changeable is false in config.json)", k))
			continue
		}
		val, err := parseValue(it, changes[k])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		nv.vals[path], nv.set[path] = val, true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return nv, nil
}

func (v *Values) clone() *Values {
	nv := &Values{cfg: v.cfg, vals: make(map[string]any, len(v.vals)), set: make(map[string]bool, len(v.set))}
	for k, x := range v.vals {
		nv.vals[k] = x
	}
	for k, x := range v.set {
		nv.set[k] = x
	}
	return nv
}

// CountPath is the config.json parameter of a role's node count, as
// AppCenter packages name it. Config.CountPath also knows role-less apps.
func CountPath(role string) string { return GroupCluster + "." + role + ".count" }

// CountPath is the parameter of role's node count. A role-less app (its
// one node entry has no role) declares it as cluster.count, or, as
// AppCenter's ZooKeeper does (cluster.zk_node.count), as the count of its
// one role array.
func (c *Config) CountPath(role string) string {
	if role != "" {
		return CountPath(role)
	}
	if _, ok := c.items[GroupCluster+".count"]; ok {
		return GroupCluster + ".count"
	}
	var found []string
	for _, path := range c.order {
		it := c.items[path]
		if it.Group == GroupCluster && it.Role != "" && it.Key == "count" {
			found = append(found, path)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return GroupCluster + ".count"
}

// CountPath is v's package's Config.CountPath.
func (v *Values) CountPath(role string) string { return v.cfg.CountPath(role) }

// ChangeCount returns a copy of v with role's node count (CountPath) set to
// count, checked against its range, min and max. A count is changed by
// scaling whatever its changeable flag says: that flag is about config
// changes, and AppCenter packages mark counts unchangeable to keep them out
// of the config form.
func (v *Values) ChangeCount(role string, count int) (*Values, error) {
	path := v.cfg.CountPath(role)
	if _, ok := v.cfg.items[path]; !ok {
		return nil, fmt.Errorf("%s: not a parameter of this app, so role %q cannot be scaled", path, role)
	}
	return v.setInt(path, count)
}

// setInt is a copy of v with the declared parameter path set to value,
// checked against its type, range, min and max.
func (v *Values) setInt(path string, value int) (*Values, error) {
	val, err := parseValue(v.cfg.items[path], strconv.Itoa(value))
	if err != nil {
		return nil, err
	}
	nv := v.clone()
	nv.vals[path], nv.set[path] = val, true
	return nv, nil
}

// ChangeRoleParam returns a copy of v with role's resource parameter key
// (cluster.<role>.<key>: cpu, memory, volume_size) set to value, checked
// against its range, min and max, whatever its changeable flag says (a
// resize is its own operation). A package that does not declare the
// parameter keeps v unchanged: the size then lives with the nodes only.
func (v *Values) ChangeRoleParam(role, key string, value int) (*Values, error) {
	path := GroupCluster + "." + role + "." + key
	if _, ok := v.cfg.items[path]; !ok {
		return v, nil
	}
	return v.setInt(path, value)
}

// Strings returns every resolved value as a string by path, for storing.
// Parameters without a value (no default, not given) are left out.
func (v *Values) Strings() map[string]string {
	out := make(map[string]string, len(v.vals))
	for k, x := range v.vals {
		if v.set[k] {
			out[k] = stringForm(x)
		}
	}
	return out
}

// Secret reports whether the parameter at path is a password, whose value
// must not be logged or returned by the API.
func (v *Values) Secret(path string) bool {
	it, ok := v.cfg.items[path]
	return ok && it.Type == TypePassword
}

// Get returns the typed value at path: int64, float64, bool, string or []any.
func (v *Values) Get(path string) (any, bool) {
	x, ok := v.vals[path]
	return x, ok
}

// literal returns the JSON literal a template tag renders to.
func (v *Values) literal(path string) (string, bool) {
	x, ok := v.vals[path]
	if !ok {
		return "", false
	}
	return jsonLiteral(x), true
}

func isStringType(t string) bool {
	switch t {
	case TypeString, TypePassword, TypeService, TypeAccessKey, TypeVXNet, TypeEIP:
		return true
	}
	return false
}

func zeroValue(it *Item) any {
	switch {
	case it.Type == TypeInteger:
		return int64(0)
	case it.Type == TypeNumber:
		return float64(0)
	case it.Type == TypeBoolean:
		return false
	case it.Type == TypeArray || it.Type == TypeLoadbalancer:
		return []any{}
	default:
		return ""
	}
}

func zeroLiteral(it *Item) string { return jsonLiteral(zeroValue(it)) }

// fromString converts a user-given string by the parameter's type.
func fromString(it *Item, s string) (any, error) {
	// Values end up in JSON, etcd, shell arguments and config files: text
	// that JSON would silently alter or that C strings would cut is refused.
	if !utf8.ValidString(s) {
		return nil, errors.New("not valid UTF-8 text")
	}
	if strings.ContainsRune(s, 0) {
		return nil, errors.New("contains a NUL character, which no value may hold")
	}
	switch {
	case it.Type == TypeInteger:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case it.Type == TypeNumber:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return f, nil
	case it.Type == TypeBoolean:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not a boolean; allowed: true, false", s)
	case it.Type == TypeArray || it.Type == TypeLoadbalancer:
		if strings.TrimSpace(s) == "" {
			return []any{}, nil
		}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var arr []any
		if err := dec.Decode(&arr); err != nil || trailingData(dec) != nil {
			return nil, fmt.Errorf("%q is not a JSON array", s)
		}
		if arr == nil {
			arr = []any{}
		}
		return arr, nil
	default:
		return s, nil
	}
}

// fromJSON converts a value from config.json (a default or a range entry).
func fromJSON(it *Item, v any) (any, error) {
	if s, ok := v.(string); ok && !isStringType(it.Type) {
		return fromString(it, s)
	}
	switch {
	case it.Type == TypeInteger:
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("want an integer, got %s", jsonKind(v))
		}
		if i, err := n.Int64(); err == nil {
			return i, nil
		}
		f, err := n.Float64()
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
			return nil, fmt.Errorf("want an integer, got %s", n)
		}
		return int64(f), nil
	case it.Type == TypeNumber:
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("want a number, got %s", jsonKind(v))
		}
		f, err := n.Float64()
		if err != nil {
			return nil, fmt.Errorf("want a number, got %s", n)
		}
		return f, nil
	case it.Type == TypeBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("want a boolean, got %s", jsonKind(v))
		}
		return b, nil
	case it.Type == TypeArray || it.Type == TypeLoadbalancer:
		switch a := v.(type) {
		case []any:
			return a, nil
		case nil:
			return []any{}, nil
		}
		return nil, fmt.Errorf("want an array, got %s", jsonKind(v))
	default:
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return x.String(), nil
		case bool:
			return strconv.FormatBool(x), nil
		case nil:
			return "", nil
		}
		return nil, fmt.Errorf("want a string, got %s", jsonKind(v))
	}
}

// checkValue applies range, multichoice, min, max, step and pattern.
func checkValue(it *Item, v any) error {
	if it.Group == GroupCluster && it.Role != "" && it.Key == "count" {
		if n, ok := v.(int64); ok && n < 0 {
			return fmt.Errorf("%d: a node count must be 0 or more", n)
		}
	}
	if len(it.Range) > 0 {
		if err := checkRange(it, v); err != nil {
			return err
		}
	}
	var f float64
	isNum := true
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case float64:
		f = x
	default:
		isNum = false
	}
	if isNum {
		shown := stringForm(v)
		if it.Min != nil && f < *it.Min {
			return fmt.Errorf("%s is below the minimum %s", shown, stringForm(*it.Min))
		}
		if it.Max != nil && f > *it.Max {
			return fmt.Errorf("%s is above the maximum %s", shown, stringForm(*it.Max))
		}
		if it.Step != nil {
			if r := math.Abs(math.Remainder(f, *it.Step)); r > 1e-9*math.Max(1, math.Abs(f)) {
				return fmt.Errorf("%s is not a multiple of the step %s", shown, stringForm(*it.Step))
			}
		}
	}
	if s, ok := v.(string); ok && it.re != nil && (s != "" || it.Required) {
		if !it.re.MatchString(s) {
			return fmt.Errorf("%q does not match the pattern %s", s, it.Pattern)
		}
	}
	return nil
}

func checkRange(it *Item, v any) error {
	allowed := make([]any, 0, len(it.Range))
	shown := make([]string, 0, len(it.Range))
	for _, r := range it.Range {
		x, err := fromJSON(it, r)
		if err != nil {
			continue // refused at load; unreachable for loaded packages
		}
		allowed = append(allowed, x)
		shown = append(shown, stringForm(x))
	}
	// Compare JSON literals: values may be slices, which == cannot compare.
	in := func(x any) bool {
		lit := jsonLiteral(x)
		for _, a := range allowed {
			if jsonLiteral(a) == lit {
				return true
			}
		}
		return false
	}
	if it.Multichoice {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("multichoice applies to strings")
		}
		if s == "" {
			return nil
		}
		for _, part := range strings.Split(s, it.Separator) {
			if !in(part) {
				return fmt.Errorf("%q is not one of: %s (choose several, joined by %q)", part, strings.Join(shown, ", "), it.Separator)
			}
		}
		return nil
	}
	switch v.(type) {
	case []any:
		return nil // ranges do not apply to arrays
	}
	if !in(v) {
		return fmt.Errorf("%s is not one of: %s", stringForm(v), strings.Join(shown, ", "))
	}
	return nil
}

// stringForm is a value as stored and as a metadata leaf: strings as they
// are, numbers in JSON form, arrays as compact JSON.
func stringForm(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return formatFloat(x)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	default:
		return jsonLiteral(x)
	}
}

// formatFloat writes a float as JavaScript's JSON.stringify does: plain
// digits below 1e21, exponent form above.
func formatFloat(f float64) string {
	if a := math.Abs(f); a != 0 && (a >= 1e21 || a < 1e-6) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// jsonLiteral encodes a value as the JSON text a template tag renders to.
func jsonLiteral(v any) string {
	switch x := v.(type) {
	case int64, float64, bool:
		return stringForm(x)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only values decoded from JSON or built from strings reach here,
		// and those always encode.
		return "null"
	}
	return strings.TrimSuffix(buf.String(), "\n")
}
