package render

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/kelseyhightower/memkv"

	"github.com/hangarhq/hangar/drone/metaview"
	"github.com/hangarhq/hangar/internal/confdfuncs"
	"github.com/hangarhq/hangar/internal/confdres"
	"github.com/hangarhq/hangar/internal/limits"
)

// The drone renders a resource in memory, with Go's text/template, the
// functions of Hangar's confd (internal/confdfuncs: confd's, memkv's and
// QingCloud's additions) and confd's values (abtreece/confd's
// pkg/template renders the same way, but writes
// straight into a file beside dest, without a bound, and by path, so a
// symlink planted in the instance would take the write elsewhere). The
// output is bounded by limits.MaxRenderedFileBytes; write.go puts it in
// place.

var errFileTooLarge = fmt.Errorf("output is larger than the %d bytes allowed for a rendered file; nothing was written", limits.MaxRenderedFileBytes)

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
	t, err := template.New(filepath.Base(src)).Funcs(confdfuncs.New(&store)).ParseFiles(src)
	if err != nil {
		return nil, err
	}
	out := &boundedBuffer{left: limits.MaxRenderedFileBytes}
	err = t.Execute(out, nil)
	switch {
	case errors.Is(err, errFileTooLarge):
		return nil, errFileTooLarge
	case errors.Is(err, confdfuncs.ErrSeqTooLong):
		return nil, fmt.Errorf("%w; nothing was written", confdfuncs.ErrSeqTooLong)
	case err != nil:
		return nil, err
	}
	return out.Bytes(), nil
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
