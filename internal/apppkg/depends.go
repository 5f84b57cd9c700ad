package apppkg

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Dependency is one entry of a parameter's dependencies in config.json:
// the parameter applies only while RefKey's value is (operator "in", the
// default) or is not ("nin") one of Values. AppCenter's console hides a
// parameter whose dependencies do not hold; Hangar refuses a value given
// for it and does not demand it when required.
type Dependency struct {
	RefKey   string // as written: a path ("env.mode") or a key beside the parameter
	Ref      string // the path it resolves to
	Values   []string
	Operator string // "in" or "nin"
}

// parseDependencies reads a dependencies field.
func parseDependencies(raw json.RawMessage) ([]Dependency, error) {
	var list []struct {
		RefKey   string `json:"refkey"`
		Values   []any  `json:"values"`
		Operator string `json:"operator"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf(`want [{"refkey": "...", "values": [...], "operator": "in" or "nin"}]: %v`, err)
	}
	out := make([]Dependency, 0, len(list))
	for i, d := range list {
		if d.RefKey == "" {
			return nil, fmt.Errorf("[%d].refkey: required", i)
		}
		op := d.Operator
		if op == "" {
			op = "in"
		}
		if op != "in" && op != "nin" {
			return nil, fmt.Errorf("[%d].operator %q: allowed: in, nin", i, d.Operator)
		}
		dep := Dependency{RefKey: d.RefKey, Operator: op}
		for _, v := range d.Values {
			dep.Values = append(dep.Values, stringForm(v))
		}
		out = append(out, dep)
	}
	return out, nil
}

// resolveDependencies resolves every dependency's refkey to a declared
// parameter: a full path, else a key of the parameter's own role, else of
// its group.
func (c *Config) resolveDependencies() error {
	for _, path := range c.order {
		it := c.items[path]
		for i := range it.Dependencies {
			d := &it.Dependencies[i]
			var candidates []string
			candidates = append(candidates, d.RefKey)
			if it.Role != "" {
				candidates = append(candidates, it.Group+"."+it.Role+"."+d.RefKey)
			}
			candidates = append(candidates, it.Group+"."+d.RefKey)
			for _, cand := range candidates {
				if _, ok := c.items[cand]; ok && cand != path {
					d.Ref = cand
					break
				}
			}
			if d.Ref == "" {
				return fmt.Errorf("%s: line %d: parameter %s: dependencies[%d].refkey %q: names no parameter (give a path like env.mode, or a key beside it)", fileConfig, it.Line, path, i, d.RefKey)
			}
		}
	}
	return nil
}

// applies reports whether it's dependencies hold for values vals (by path,
// in their string form), and if not, which one fails.
func (it *Item) applies(vals func(path string) (string, bool)) (bool, string) {
	for _, d := range it.Dependencies {
		v, _ := vals(d.Ref)
		in := slices.Contains(d.Values, v)
		if in != (d.Operator == "in") {
			verb := "is one of"
			if d.Operator == "nin" {
				verb = "is not one of"
			}
			return false, fmt.Sprintf("%s applies only when %s %s %s; it is %q", it.Path, d.Ref, verb, strings.Join(d.Values, ", "), v)
		}
	}
	return true, ""
}
