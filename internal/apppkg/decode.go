package apppkg

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// maxDecodeErrors bounds the errors one rendering reports; past that the
// author has a bigger problem than any single field.
const maxDecodeErrors = 20

// specDecoder fills a ClusterSpec from generic JSON, refusing unknown
// fields and wrong types with the path of the field (nodes[1].servics), and
// warning about platform hints and fields not acted on yet.
type specDecoder struct {
	errs []string
	warn *warnings
	// lines are where each value starts in the rendered JSON, whose lines
	// are the template's (a value is one JSON literal, on one line).
	lines map[string]int
}

func (d *specDecoder) fail(path, format string, args ...any) {
	if len(d.errs) < maxDecodeErrors {
		at := ""
		if l := d.lines[path]; l > 0 {
			at = fmt.Sprintf("line %d: ", l)
		}
		d.errs = append(d.errs, fmt.Sprintf("%s%s: %s", at, displayPath(path), fmt.Sprintf(format, args...)))
	}
}

func (d *specDecoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(d.errs, "; "))
}

func displayPath(p string) string {
	if p == "" {
		return "cluster.json"
	}
	return p
}

func childPath(parent, key string) string {
	simple := key != ""
	for _, r := range key {
		if !(r == '_' || r == '-' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			simple = false
			break
		}
	}
	switch {
	case !simple:
		return fmt.Sprintf("%s[%q]", parent, key)
	case parent == "":
		return key
	default:
		return parent + "." + key
	}
}

type defaulter interface{ setDefaults() }

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	defaulterType   = reflect.TypeFor[defaulter]()
)

// newValue returns a settable zero value of t with its defaults applied.
func newValue(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if t.Kind() == reflect.Struct && p.Type().Implements(defaulterType) {
		p.Interface().(defaulter).setDefaults()
	}
	return p.Elem()
}

// openPitrixPlatformFields are cluster fields an OpenPitrix
// cluster.json.tmpl carries for its platform (its own ids and a debug
// switch); they are accepted as platform hints.
func openPitrixPlatformFields() []string {
	return []string{"app_id", "version_id", "global_uuid", "debug"}
}

type fieldInfo struct {
	index  int
	notYet bool
}

// structFields maps JSON names to fields, and returns the field collecting
// platform hints with the hint names it accepts.
func structFields(t reflect.Type) (fields map[string]fieldInfo, hintsField int, hints []string) {
	fields = map[string]fieldInfo{}
	hintsField = -1
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("hangar")
		if list, ok := strings.CutPrefix(tag, "hints="); ok {
			hintsField, hints = i, strings.Split(list, ",")
			continue
		}
		name := f.Tag.Get("json")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = fieldInfo{index: i, notYet: tag == "notyet"}
	}
	return fields, hintsField, hints
}

func (d *specDecoder) decode(path string, v any, rv reflect.Value) {
	if rv.CanAddr() && rv.Addr().Type().Implements(unmarshalerType) {
		if v == nil {
			return
		}
		b, err := json.Marshal(v)
		if err == nil {
			err = rv.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b)
		}
		if err != nil {
			d.fail(path, "%v", err)
		}
		return
	}
	switch rv.Kind() {
	case reflect.Pointer:
		if v == nil {
			return
		}
		nv := newValue(rv.Type().Elem())
		d.decode(path, v, nv)
		rv.Set(nv.Addr())
	case reflect.Struct:
		d.decodeStruct(path, v, rv)
	case reflect.Slice:
		if v == nil {
			return
		}
		arr, ok := v.([]any)
		if !ok {
			d.fail(path, "want an array, got %s", jsonKind(v))
			return
		}
		out := reflect.MakeSlice(rv.Type(), len(arr), len(arr))
		for i, x := range arr {
			elem := newValue(rv.Type().Elem())
			d.decode(fmt.Sprintf("%s[%d]", path, i), x, elem)
			out.Index(i).Set(elem)
		}
		rv.Set(out)
	case reflect.Map:
		if v == nil {
			return
		}
		obj, ok := v.(map[string]any)
		if !ok {
			d.fail(path, "want an object, got %s", jsonKind(v))
			return
		}
		out := reflect.MakeMapWithSize(rv.Type(), len(obj))
		for _, k := range sortedKeys(obj) {
			elem := newValue(rv.Type().Elem())
			d.decode(childPath(path, k), obj[k], elem)
			out.SetMapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()), elem)
		}
		rv.Set(out)
	case reflect.String:
		switch x := v.(type) {
		case nil:
		case string:
			rv.SetString(x)
		default:
			d.fail(path, "want a string, got %s", jsonKind(v))
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		switch x := v.(type) {
		case nil:
		case json.Number:
			i, err := x.Int64()
			if err != nil || rv.OverflowInt(i) {
				d.fail(path, "want an integer, got %s", x)
				return
			}
			rv.SetInt(i)
		default:
			d.fail(path, "want an integer, got %s", jsonKind(v))
		}
	case reflect.Float64:
		switch x := v.(type) {
		case nil:
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				d.fail(path, "want a number, got %s", x)
				return
			}
			rv.SetFloat(f)
		default:
			d.fail(path, "want a number, got %s", jsonKind(v))
		}
	case reflect.Bool:
		switch x := v.(type) {
		case nil:
		case bool:
			rv.SetBool(x)
		default:
			d.fail(path, "want true or false, got %s", jsonKind(v))
		}
	case reflect.Interface:
		if v != nil {
			rv.Set(reflect.ValueOf(v))
		}
	default:
		d.fail(path, "cannot decode into %s", rv.Type())
	}
}

func (d *specDecoder) decodeStruct(path string, v any, rv reflect.Value) {
	if v == nil {
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		d.fail(path, "want an object, got %s", jsonKind(v))
		return
	}
	fields, hintsField, hints := structFields(rv.Type())
	for _, k := range sortedKeys(obj) {
		cp := childPath(path, k)
		f, ok := fields[k]
		if !ok {
			if hintsField >= 0 && contains(hints, k) {
				raw, _ := json.Marshal(obj[k])
				hv := rv.Field(hintsField)
				if hv.IsNil() {
					hv.Set(reflect.MakeMap(hv.Type()))
				}
				hv.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(json.RawMessage(raw)))
				if slices.Contains(openPitrixPlatformFields(), k) {
					d.warn.add("%s: filled by the OpenPitrix platform; accepted, but it has no effect in Hangar, which keeps its own (/cluster/app_id, /cluster/global_uuid)", cp)
				} else {
					d.warn.add("%s: QingCloud platform hint; accepted, but it has no effect in Hangar", cp)
				}
				continue
			}
			d.fail(cp, "unknown field; allowed here: %s", allowedFields(fields, hints))
			continue
		}
		fv := rv.Field(f.index)
		d.decode(cp, obj[k], fv)
		if f.notYet && !isEmpty(fv) {
			d.warn.add("%s: parsed but not yet executed by Hangar", cp)
		}
	}
}

func allowedFields(fields map[string]fieldInfo, hints []string) string {
	names := make([]string, 0, len(fields)+len(hints))
	for n := range fields {
		names = append(names, n)
	}
	names = append(names, hints...)
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// isEmpty reports values that say nothing: zero, or empty slices and maps.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// decodeSpec parses a rendered cluster.json strictly.
// Errors name fields and lines of the rendered text, which match the
// template's lines: JSON literals never span lines.
func decodeSpec(data []byte) (*ClusterSpec, error) {
	root, err := decodeJSON("", data)
	if err != nil {
		return nil, err
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the root must be an object, got %s", jsonKind(root))
	}
	// endpoints mixes services with the reserved_ips entry; give the
	// latter its own field so an endpoint can stay a strict struct.
	if eps, ok := obj["endpoints"].(map[string]any); ok {
		if r, ok := eps["reserved_ips"]; ok {
			if _, clash := obj["endpoints.reserved_ips"]; clash {
				return nil, errors.New(`"endpoints.reserved_ips": unknown field`)
			}
			rest := make(map[string]any, len(eps))
			for k, x := range eps {
				if k != "reserved_ips" {
					rest[k] = x
				}
			}
			obj["endpoints"], obj["endpoints.reserved_ips"] = rest, r
		}
	}
	var w warnings
	d := &specDecoder{warn: &w, lines: jsonLines(data)}
	spec := &ClusterSpec{}
	d.decode("", obj, reflect.ValueOf(spec).Elem())
	if err := d.err(); err != nil {
		return nil, err
	}
	spec.Warnings = w.list()
	return spec, nil
}
