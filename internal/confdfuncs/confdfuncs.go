// Package confdfuncs is the set of template functions of Hangar's confd:
// what a confd template may call on a drone, in `hangar app render`, and
// what push and lint parse templates against.
//
// AppCenter's drones run QingCloud's fork of confd (yunify/confd), whose
// templates add to confd's own functions: filter, toJson, toYaml, min, max,
// and number-aware arithmetic and comparisons that take the strings every
// metadata value is. Packages rely on them (`sub (getv "/host/sid") 1`,
// `lsdir "/adding-hosts" | filter $id`), so Hangar renders with all three
// sets: confd's stock functions (as abtreece/confd v0.30.0 has them), the
// key-value functions of kelseyhightower/memkv, and the fork's additions
// with the fork's semantics. abtreece/confd's template package has no hook
// for extra functions and links every backend confd has (AWS, Vault,
// Consul, ZooKeeper, Redis), which a drone never uses; so the functions are
// written here, each small.
package confdfuncs

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/kelseyhightower/memkv"
	yaml "go.yaml.in/yaml/v2"

	"github.com/hangarhq/hangar/internal/limits"
)

// ErrSeqTooLong is seq asked for more numbers than a rendered file may
// hold bytes: such a template could only fail later, having used the
// memory.
var ErrSeqTooLong = fmt.Errorf("seq of more than %d numbers", limits.MaxRenderedFileBytes)

// New returns every function a template may call, the key-value ones
// reading store.
func New(store *memkv.Store) template.FuncMap {
	m := template.FuncMap{
		// confd's stock functions.
		"base":            path.Base,
		"dir":             path.Dir,
		"split":           strings.Split,
		"join":            strings.Join,
		"toUpper":         strings.ToUpper,
		"toLower":         strings.ToLower,
		"contains":        strings.Contains,
		"replace":         strings.Replace,
		"trimSuffix":      strings.TrimSuffix,
		"json":            jsonObject,
		"jsonArray":       jsonArray,
		"map":             makeMap,
		"getenv":          getenv,
		"datetime":        time.Now,
		"hostname":        os.Hostname,
		"fileExists":      fileExists,
		"parseBool":       strconv.ParseBool,
		"atoi":            strconv.Atoi,
		"seq":             seq,
		"reverse":         reverse,
		"sortByLength":    sortByLength,
		"sortKVByLength":  sortKVByLength,
		"base64Encode":    base64Encode,
		"base64Decode":    base64Decode,
		"lookupIP":        lookupIP,
		"lookupIPV4":      lookupIPV4,
		"lookupIPV6":      lookupIPV6,
		"lookupV4IP":      lookupIPV4, // the fork's name
		"lookupSRV":       lookupSRV,
		"lookupIfaceIPV4": lookupIfaceIPV4,
		"lookupIfaceIPV6": lookupIfaceIPV6,
		// QingCloud's additions.
		"add":    func(a, b any) (any, error) { return arith("add", a, b) },
		"sub":    func(a, b any) (any, error) { return arith("sub", a, b) },
		"mul":    func(a, b any) (any, error) { return arith("mul", a, b) },
		"div":    func(a, b any) (any, error) { return arith("div", a, b) },
		"mod":    mod,
		"max":    func(a, b any) (float64, error) { return minMax("max", a, b) },
		"min":    func(a, b any) (float64, error) { return minMax("min", a, b) },
		"eq":     eq,
		"ne":     ne,
		"lt":     func(a, b any) bool { l, r := comparable(a, b); return l < r },
		"le":     func(a, b any) bool { l, r := comparable(a, b); return l <= r },
		"gt":     func(a, b any) bool { l, r := comparable(a, b); return l > r },
		"ge":     func(a, b any) bool { l, r := comparable(a, b); return l >= r },
		"filter": filter,
		"toJson": toJSON,
		"toYaml": toYAML,
	}
	if store != nil {
		for name, fn := range store.FuncMap {
			m[name] = fn
		}
	}
	return m
}

// Names lists every function New gives, sorted: push and lint parse
// templates against exactly these.
func Names() []string {
	store := memkv.New()
	m := New(&store)
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// number is a value read as a number: an integer unless it was written
// with a fraction or an exponent.
type number struct {
	float bool
	i     int64
	f     float64
}

func (n number) toFloat() float64 {
	if n.float {
		return n.f
	}
	return float64(n.i)
}

// toNumber reads v as the fork does: Go integers and floats as they are,
// strings as a float when they hold a '.' (or an exponent), else as an
// integer.
func toNumber(v any) (number, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return number{i: rv.Int()}, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return number{i: int64(rv.Uint())}, true
	case reflect.Float32, reflect.Float64:
		return number{float: true, f: rv.Float()}, true
	case reflect.String:
		s := strings.TrimSpace(rv.String())
		if strings.ContainsAny(s, ".eE") {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || f != f { // NaN is no number to compute with
				return number{}, false
			}
			return number{float: true, f: f}, true
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return number{}, false
		}
		return number{i: i}, true
	}
	return number{}, false
}

func operand(fn string, v any) (number, error) {
	n, ok := toNumber(v)
	if !ok {
		return number{}, fmt.Errorf("%s: %#v is not a number", fn, v)
	}
	return n, nil
}

// arith is add, sub, mul and div: integers stay integers (div truncates),
// and a float on either side makes the result a float.
func arith(fn string, a, b any) (any, error) {
	x, err := operand(fn, a)
	if err != nil {
		return nil, err
	}
	y, err := operand(fn, b)
	if err != nil {
		return nil, err
	}
	if x.float || y.float {
		xf, yf := x.toFloat(), y.toFloat()
		switch fn {
		case "add":
			return xf + yf, nil
		case "sub":
			return xf - yf, nil
		case "mul":
			return xf * yf, nil
		}
		if yf == 0 {
			return nil, errors.New("div: division by zero")
		}
		return xf / yf, nil
	}
	switch fn {
	case "add":
		return x.i + y.i, nil
	case "sub":
		return x.i - y.i, nil
	case "mul":
		return x.i * y.i, nil
	}
	if y.i == 0 {
		return nil, errors.New("div: division by zero")
	}
	return x.i / y.i, nil
}

// mod takes integers only, as the fork does.
func mod(a, b any) (int64, error) {
	x, err := operand("mod", a)
	if err != nil {
		return 0, err
	}
	y, err := operand("mod", b)
	if err != nil {
		return 0, err
	}
	if x.float || y.float {
		return 0, fmt.Errorf("mod: %v and %v: takes integers only", a, b)
	}
	if y.i == 0 {
		return 0, errors.New("mod: division by zero")
	}
	return x.i % y.i, nil
}

// minMax answers a float, as the fork does (it prints without a fraction
// when it has none).
func minMax(fn string, a, b any) (float64, error) {
	x, err := operand(fn, a)
	if err != nil {
		return 0, err
	}
	y, err := operand(fn, b)
	if err != nil {
		return 0, err
	}
	xf, yf := x.toFloat(), y.toFloat()
	if (fn == "max") == (xf > yf) {
		return xf, nil
	}
	return yf, nil
}

// eq is true when x equals any of ys, comparing as numbers where both
// read as numbers ("1" eq 1.0), else as they are. The fork takes two
// arguments; Go's eq takes more, and so does this one.
func eq(x any, ys ...any) (bool, error) {
	if len(ys) == 0 {
		return false, errors.New("eq: missing argument for comparison")
	}
	for _, y := range ys {
		if equal(x, y) {
			return true, nil
		}
	}
	return false, nil
}

func ne(x, y any) bool { return !equal(x, y) }

func equal(x, y any) bool {
	nx, okx := toNumber(x)
	ny, oky := toNumber(y)
	if okx && oky {
		return nx.toFloat() == ny.toFloat()
	}
	return reflect.DeepEqual(x, y)
}

// comparable turns a and b into numbers to compare as the fork does: a
// list counts by its length, a number or a numeric string by its value;
// two non-numeric strings compare as strings; anything else counts as 0.
func comparable(a, b any) (float64, float64) {
	l, ls := comparand(a)
	r, rs := comparand(b)
	if ls != nil && rs != nil {
		return float64(strings.Compare(*ls, *rs)), 0
	}
	return l, r
}

func comparand(v any) (float64, *string) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Array, reflect.Slice, reflect.Map, reflect.Chan:
		return float64(rv.Len()), nil
	case reflect.String:
		if n, ok := toNumber(v); ok {
			return n.toFloat(), nil
		}
		s := rv.String()
		return 0, &s
	}
	if n, ok := toNumber(v); ok {
		return n.toFloat(), nil
	}
	return 0, nil
}

// filter keeps the entries of list that the regular expression matches
// anywhere (it is not anchored): strings by their text, memkv pairs by
// their value. Used as a pipe: `lsdir "/adding-hosts" | filter $id`.
func filter(expr string, list any) (any, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	switch l := list.(type) {
	case []string:
		out := []string{}
		for _, s := range l {
			if re.MatchString(s) {
				out = append(out, s)
			}
		}
		return out, nil
	case []memkv.KVPair:
		out := []memkv.KVPair{}
		for _, kv := range l {
			if re.MatchString(kv.Value) {
				out = append(out, kv)
			}
		}
		return out, nil
	}
	rv := reflect.ValueOf(list)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil, fmt.Errorf("filter: takes a list, not %T", list)
	}
	out := []any{}
	for i := 0; i < rv.Len(); i++ {
		switch e := rv.Index(i).Interface().(type) {
		case string:
			if re.MatchString(e) {
				out = append(out, e)
			}
		case memkv.KVPair:
			if re.MatchString(e.Value) {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func toYAML(v any) (string, error) {
	b, err := yaml.Marshal(v)
	return string(b), err
}

func jsonObject(s string) (map[string]any, error) {
	var m map[string]any
	err := json.Unmarshal([]byte(s), &m)
	return m, err
}

func jsonArray(s string) ([]any, error) {
	var a []any
	err := json.Unmarshal([]byte(s), &a)
	return a, err
}

// makeMap builds a map from key, value, key, value….
func makeMap(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, errors.New("map: takes keys and values in pairs")
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("map: key %v is not a string", kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

func getenv(key string, def ...string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	if len(def) > 0 {
		return def[0]
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func seq(first, last int) ([]int, error) {
	if last < first {
		return nil, nil
	}
	if uint64(last-first) >= limits.MaxRenderedFileBytes {
		return nil, ErrSeqTooLong
	}
	out := make([]int, 0, last-first+1)
	for i := first; i <= last; i++ {
		out = append(out, i)
	}
	return out, nil
}

// reverse answers a reversed copy of a list of strings or pairs (any other
// value as it is).
func reverse(v any) any {
	switch l := v.(type) {
	case []string:
		out := make([]string, len(l))
		for i, s := range l {
			out[len(l)-1-i] = s
		}
		return out
	case []memkv.KVPair:
		out := make([]memkv.KVPair, len(l))
		for i, kv := range l {
			out[len(l)-1-i] = kv
		}
		return out
	}
	return v
}

func sortByLength(l []string) []string {
	out := append([]string(nil), l...)
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) < len(out[j]) })
	return out
}

func sortKVByLength(l []memkv.KVPair) []memkv.KVPair {
	out := append([]memkv.KVPair(nil), l...)
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Key) < len(out[j].Key) })
	return out
}

// base64Encode takes a string or bytes, as the fork's does.
func base64Encode(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return base64.StdEncoding.EncodeToString([]byte(x)), nil
	case []byte:
		return base64.StdEncoding.EncodeToString(x), nil
	}
	return "", fmt.Errorf("base64Encode: takes a string, not %T", v)
}

func base64Decode(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}

func lookupIP(host string) []string {
	ips, err := net.LookupIP(host)
	if err != nil {
		return nil
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	sort.Strings(out)
	return out
}

func lookupIPV4(host string) []string {
	var out []string
	for _, ip := range lookupIP(host) {
		if strings.Contains(ip, ".") {
			out = append(out, ip)
		}
	}
	return out
}

func lookupIPV6(host string) []string {
	var out []string
	for _, ip := range lookupIP(host) {
		if strings.Contains(ip, ":") {
			out = append(out, ip)
		}
	}
	return out
}

func lookupSRV(service, proto, name string) []*net.SRV {
	_, addrs, err := net.LookupSRV(service, proto, name)
	if err != nil {
		return []*net.SRV{}
	}
	sort.Slice(addrs, func(i, j int) bool {
		a, b := addrs[i], addrs[j]
		return fmt.Sprintf("%s%d%d%d", a.Target, a.Port, a.Priority, a.Weight) < fmt.Sprintf("%s%d%d%d", b.Target, b.Port, b.Priority, b.Weight)
	})
	return addrs
}

func lookupIfaceIPV4(name string) string { return ifaceAddr(name, true) }
func lookupIfaceIPV6(name string) string { return ifaceAddr(name, false) }

// ifaceAddr is the first IPv4 (or IPv6) address of interface name, or "".
func ifaceAddr(name string, v4 bool) string {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return ""
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if (ipn.IP.To4() != nil) == v4 {
			return ipn.IP.String()
		}
	}
	return ""
}
