package render

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/BurntSushi/toml"
	confdtmpl "github.com/abtreece/confd/pkg/template"
	confdutil "github.com/abtreece/confd/pkg/util"
	"github.com/kelseyhightower/memkv"

	"github.com/hangarhq/hangar/drone/metaview"
	"github.com/hangarhq/hangar/internal/limits"
)

// confd writes a template's output straight into a file beside dest,
// without any bound, and offers no hook before it does. So each resource is
// first rendered here, in memory and counted but not kept, with the same
// engine, functions and values; only when its output fits
// limits.MaxRenderedFileBytes does confd render it for real. The two reads
// of the metadata may differ if it changes in between: the next change
// renders (and checks) again.

var (
	errFileTooLarge = fmt.Errorf("output is larger than the %d bytes allowed for a rendered file; nothing was written", limits.MaxRenderedFileBytes)
	errSeqTooLong   = fmt.Errorf("seq of more than %d numbers", limits.MaxRenderedFileBytes)
)

// checkSize renders the resource in file (a conf.d toml) without writing
// it and fails when its output would be too large, or when it asks seq for
// a sequence that could not fit a file (confd would allocate it whole).
// Other failures are left for confd to report, in its own words.
func checkSize(file, templateDir string, sc *metaview.StoreClient) error {
	var tc struct {
		Template struct {
			Src  string   `toml:"src"`
			Keys []string `toml:"keys"`
		} `toml:"template"`
	}
	if _, err := toml.DecodeFile(file, &tc); err != nil || tc.Template.Src == "" {
		return nil
	}
	// As confd: the renderer's prefix replaces the resource's own.
	keys := make([]string, len(tc.Template.Keys))
	for i, k := range tc.Template.Keys {
		keys[i] = path.Join(metaview.Root, k)
	}
	values, err := sc.GetValues(keys)
	if err != nil {
		return nil
	}
	store := memkv.New()
	for k, v := range values {
		store.Set(path.Join("/", strings.TrimPrefix(k, metaview.Root)), v)
	}
	src := filepath.Join(templateDir, tc.Template.Src)
	t, err := template.New(filepath.Base(src)).Funcs(confdFuncs(store.FuncMap)).ParseFiles(src)
	if err != nil {
		return nil
	}
	err = t.Execute(&countingWriter{left: limits.MaxRenderedFileBytes}, nil)
	switch {
	case errors.Is(err, errFileTooLarge):
		return errFileTooLarge
	case errors.Is(err, errSeqTooLong):
		return fmt.Errorf("%w; nothing was written", errSeqTooLong)
	}
	return nil
}

// confdFuncs are the template functions of abtreece/confd v0.30.0's
// resources (its own and memkv's), with seq bounded.
func confdFuncs(storeFuncs map[string]any) template.FuncMap {
	m := template.FuncMap{
		"base":            path.Base,
		"split":           strings.Split,
		"json":            confdtmpl.UnmarshalJsonObject,
		"jsonArray":       confdtmpl.UnmarshalJsonArray,
		"dir":             path.Dir,
		"map":             confdtmpl.CreateMap,
		"getenv":          confdtmpl.Getenv,
		"join":            strings.Join,
		"datetime":        time.Now,
		"toUpper":         strings.ToUpper,
		"toLower":         strings.ToLower,
		"contains":        strings.Contains,
		"replace":         strings.Replace,
		"trimSuffix":      strings.TrimSuffix,
		"lookupIP":        confdtmpl.LookupIP,
		"lookupIPV4":      confdtmpl.LookupIPV4,
		"lookupIPV6":      confdtmpl.LookupIPV6,
		"lookupSRV":       confdtmpl.LookupSRV,
		"lookupIfaceIPV4": confdtmpl.LookupIfaceIPV4,
		"lookupIfaceIPV6": confdtmpl.LookupIfaceIPV6,
		"fileExists":      confdutil.IsFileExist,
		"base64Encode":    confdtmpl.Base64Encode,
		"base64Decode":    confdtmpl.Base64Decode,
		"parseBool":       strconv.ParseBool,
		"reverse":         confdtmpl.Reverse,
		"sortByLength":    confdtmpl.SortByLength,
		"sortKVByLength":  confdtmpl.SortKVByLength,
		"add":             func(a, b int) int { return a + b },
		"sub":             func(a, b int) int { return a - b },
		"div":             func(a, b int) int { return a / b },
		"mod":             func(a, b int) int { return a % b },
		"mul":             func(a, b int) int { return a * b },
		"seq": func(first, last int) ([]int, error) {
			if last >= first && uint64(last-first) >= limits.MaxRenderedFileBytes {
				return nil, errSeqTooLong
			}
			return confdtmpl.Seq(first, last), nil
		},
		"atoi":     strconv.Atoi,
		"hostname": confdtmpl.GetHostname,
	}
	for name, fn := range storeFuncs {
		m[name] = fn
	}
	return m
}

// countingWriter discards what it is given and fails once more than left
// bytes came.
type countingWriter struct{ left int }

func (w *countingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		w.left = -1
		return 0, errFileTooLarge
	}
	w.left -= len(p)
	return len(p), nil
}
