package render

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	confdtmpl "github.com/abtreece/confd/pkg/template"
	confdutil "github.com/abtreece/confd/pkg/util"
	"github.com/kelseyhightower/memkv"

	"github.com/hangarhq/hangar/drone/metaview"
	"github.com/hangarhq/hangar/internal/confdres"
	"github.com/hangarhq/hangar/internal/limits"
)

// The drone renders a resource in memory, with confd's engine, functions
// and values (abtreece/confd's pkg/template does the same, but writes
// straight into a file beside dest, without a bound, and by path, so a
// symlink planted in the instance would take the write elsewhere). The
// output is bounded by limits.MaxRenderedFileBytes; write.go puts it in
// place.

var (
	errFileTooLarge = fmt.Errorf("output is larger than the %d bytes allowed for a rendered file; nothing was written", limits.MaxRenderedFileBytes)
	errSeqTooLong   = fmt.Errorf("seq of more than %d numbers", limits.MaxRenderedFileBytes)
)

// renderTemplate executes res's template (in templateDir) on the values of
// its keys, as confd does: the renderer's prefix (/self) replaces the
// resource's own, and the keys are read at one revision of the metadata.
func renderTemplate(res confdres.Resource, templateDir string, sc *metaview.StoreClient) ([]byte, error) {
	keys := make([]string, len(res.Keys))
	for i, k := range res.Keys {
		keys[i] = path.Join(metaview.Root, k)
	}
	values, err := sc.GetValues(keys)
	if err != nil {
		return nil, err
	}
	store := memkv.New()
	for k, v := range values {
		store.Set(path.Join("/", strings.TrimPrefix(k, metaview.Root)), v)
	}
	src := filepath.Join(templateDir, filepath.FromSlash(res.Src))
	t, err := template.New(filepath.Base(src)).Funcs(confdFuncs(store.FuncMap)).ParseFiles(src)
	if err != nil {
		return nil, err
	}
	out := &boundedBuffer{left: limits.MaxRenderedFileBytes}
	err = t.Execute(out, nil)
	switch {
	case errors.Is(err, errFileTooLarge):
		return nil, errFileTooLarge
	case errors.Is(err, errSeqTooLong):
		return nil, fmt.Errorf("%w; nothing was written", errSeqTooLong)
	case err != nil:
		return nil, err
	}
	return out.Bytes(), nil
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

// boundedBuffer keeps what it is given and fails once more than left
// bytes came.
type boundedBuffer struct {
	bytes.Buffer
	left int
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if len(p) > w.left {
		w.left = -1
		return 0, errFileTooLarge
	}
	w.left -= len(p)
	return w.Buffer.Write(p)
}
