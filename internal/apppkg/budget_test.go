package apppkg

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGoTemplateWorkIsBounded loads packages whose cluster.json.tmpl would
// run forever or exhaust memory without writing much: each must fail fast
// with an error naming the file and the limit.
func TestGoTemplateWorkIsBounded(t *testing.T) {
	var doubling strings.Builder
	doubling.WriteString(`{{define "t0"}}{{end}}`)
	for i := 1; i <= 40; i++ {
		// Each level calls the one below twice: 2^40 calls in all.
		doubling.WriteString(`{{define "t` + strconv.Itoa(i) + `"}}{{template "t` + strconv.Itoa(i-1) + `"}}{{template "t` + strconv.Itoa(i-1) + `"}}{{end}}`)
	}
	doubling.WriteString(`{{template "t40"}}`)

	tests := []struct {
		name, prefix string
		want         string
	}{
		{"huge range", `{{range 1000000000000}}{{end}}`, "units of work"},
		{"nested ranges", `{{range 100000}}{{range 100000}}{{end}}{{end}}`, "units of work"},
		{"templates calling each other twice per level", doubling.String(), "units of work"},
		{"variable doubled in a loop", `{{$x := "ab"}}{{range 64}}{{$x = printf "%s%s" $x $x}}{{end}}`, "at most"},
		{"escaping in a loop", `{{$x := "\\"}}{{range 40}}{{$x = js $x}}{{end}}`, "at most"},
		{"huge output", `{{$s := printf "%0999999d" 0}}{{range 10}}{{$s}}{{end}}`, "renders to more than"},
		{"print of many large arguments", `{{$s := printf "%0999999d" 0}}{{print $s $s $s $s $s $s}}`, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := kvFiles()
			delete(files, "cluster.json.mustache")
			files["cluster.json.tmpl"] = tt.prefix + kvGoTemplate
			start := time.Now()
			_, err := loadFiles(t, files)
			wantErr(t, err, "cluster.json.tmpl", tt.want)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %v to refuse", d)
			}
		})
	}
}

// TestGoTemplateBudgetIsPerExecution renders a template that uses a good
// part of the budget many times at once: were the budget shared between
// executions, some renderings would fail.
func TestGoTemplateBudgetIsPerExecution(t *testing.T) {
	files := kvFiles()
	delete(files, "cluster.json.mustache")
	files["cluster.json.tmpl"] = `{{range 300000}}{{end}}` + kvGoTemplate
	p := mustLoad(t, files)
	v, err := p.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Concurrently too: a Package is safe for concurrent use.
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Render(v)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestMustacheOutputIsBounded repeats a parameter in many tags: the output
// grows with the value given at render time, so the limit applies then.
func TestMustacheOutputIsBounded(t *testing.T) {
	files := kvFiles()
	var env strings.Builder
	for i := range 8 {
		env.WriteString(`"d` + strconv.Itoa(i) + `": {{cluster.description}}, `)
	}
	files["cluster.json.mustache"] = edit(t, kvMustache, `"port": {{env.port}},`, env.String()+`"port": {{env.port}},`)
	p := mustLoad(t, files)
	v, err := p.Resolve(map[string]string{"cluster.description": strings.Repeat("d", 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Render(v)
	wantErr(t, err, "cluster.json.mustache", "renders to more than")
}
