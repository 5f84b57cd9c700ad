package main

import (
	"fmt"
	"strings"
	"unicode"
)

// parseKeyValues parses KEY=VALUE arguments. what names where they came from
// ("--param", "argument") and example shows a correct one; both appear in the
// error for a malformed or repeated argument. Only the first "=" splits, so
// values may hold "=" and ","; an empty value is allowed.
func parseKeyValues(what, example string, args []string) (map[string]string, error) {
	out := make(map[string]string, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE, e.g. %s", what, a, example)
		}
		if k == "" {
			return nil, fmt.Errorf("%s %q: the key before \"=\" is empty; want KEY=VALUE, e.g. %s", what, a, example)
		}
		if i := strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
			return nil, fmt.Errorf("%s %q: the key %q contains whitespace; keys are names like %s", what, a, k, strings.SplitN(example, "=", 2)[0])
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s %q: key %q is given more than once", what, a, k)
		}
		out[k] = v
	}
	return out, nil
}
