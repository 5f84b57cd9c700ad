package confdfuncs

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"text/template"
)

// errOutputBound stops a template that writes more than the fuzz target
// allows, so a long loop ends.
var errOutputBound = errors.New("output bound")

type boundWriter struct {
	bytes.Buffer
	left int
}

func (w *boundWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		return 0, errOutputBound
	}
	w.left -= len(p)
	return w.Buffer.Write(p)
}

// FuzzRender renders random templates with every function against a small
// metadata tree: a template may fail, never crash the renderer.
func FuzzRender(f *testing.F) {
	for _, seed := range []string{
		`{{add "1" "2"}}{{sub (getv "/host/sid") 1}}{{div 1 0}}`,
		`{{range $d := lsdir "/hosts"}}{{if lsdir "/adding-hosts" | filter $d}}{{$d}}{{end}}{{end}}`,
		`{{toJson (gets "/env/*")}}{{toYaml (map "a" 1 "b" (lsdir "/"))}}`,
		`{{max "1e3" (min "x" 2)}}{{eq 1 "1.0"}}{{lt (ls "/") "a"}}{{mod "7" "0.5"}}`,
		`{{reverse (sortKVByLength (gets "/hosts/*/sid"))}}{{base64Decode "!!"}}{{json "{"}}{{jsonArray "[1"}}`,
		`{{filter "[" (ls "/")}}{{filter "." 3}}{{map 1 2}}{{mul "9223372036854775807" 2}}`,
	} {
		f.Add(seed)
	}
	funcs := New(store())
	f.Fuzz(func(t *testing.T, text string) {
		// seq with large bounds, and loops over it, only cost time; the
		// renderer bounds seq and the output (tested elsewhere).
		if strings.Contains(text, "seq") || strings.Contains(text, "lookup") || strings.Contains(text, "hostname") {
			return
		}
		tmpl, err := template.New("fuzz").Funcs(funcs).Parse(text)
		if err != nil {
			return
		}
		w := &boundWriter{left: 1 << 16}
		_ = tmpl.Execute(w, nil)
	})
}
