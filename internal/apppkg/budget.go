package apppkg

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/hangarhq/hangar/internal/limits"
)

// A cluster template is written by whoever uploads the package and runs
// inside pilot, so one package must not be able to stall or exhaust pilot
// for every tenant. Go templates can loop (range over 10^12, nested
// ranges, templates calling each other twice per level) and can grow a
// string by reassigning a variable in a loop, all without writing output.
// Each execution therefore gets a work budget: every executed template body
// charges its node count, and every string-building function its size. The
// output itself is capped by limitedBuffer.

// workFunc is the function injected at the start of every template body.
// Its name shows in the error a template over budget gets.
const workFunc = "hangarWorkLimit"

var (
	errOverBudget = fmt.Errorf("the template does more than %d units of work (a loop over a huge range, or nested loops or templates?)", limits.MaxTemplateWork)
	errTooLarge   = fmt.Errorf("renders to more than the %d bytes allowed", limits.MaxClusterSpecBytes)
)

// budget meters one execution. Executions do not share one: each gets
// functions bound to its own.
type budget struct{ left int }

func (b *budget) charge(units int) error {
	b.left -= units
	if b.left < 0 {
		return errOverBudget
	}
	return nil
}

// meteredFuncs are the functions of one execution. They replace the
// string-building builtins so their results are bounded too.
func meteredFuncs(b *budget) template.FuncMap {
	result := func(s string) (string, error) {
		if len(s) > limits.MaxTemplateValueBytes {
			return "", fmt.Errorf("a value of %d bytes; at most %d are allowed", len(s), limits.MaxTemplateValueBytes)
		}
		return s, b.charge(1 + len(s)>>10)
	}
	// before refuses calls whose result would be too large before fmt
	// builds it in memory.
	before := func(format string, args []any) error {
		n := len(format) + estimateSize(args)
		// fmt caps widths and precisions at 10^6; each verb may pad that much.
		if strings.ContainsAny(format, "0123456789*") {
			n += strings.Count(format, "%") * 1_000_000
		}
		if n > limits.MaxTemplateValueBytes {
			return fmt.Errorf("arguments of about %d bytes; at most %d are allowed", n, limits.MaxTemplateValueBytes)
		}
		return b.charge(1 + n>>10)
	}
	// The escapers turn one byte into at most 6.
	escaper := func(f func(...any) string) func(...any) (string, error) {
		return func(args ...any) (string, error) {
			if n := 6 * estimateSize(args); n > limits.MaxTemplateValueBytes {
				return "", fmt.Errorf("arguments of about %d bytes escaped; at most %d are allowed", n, limits.MaxTemplateValueBytes)
			}
			return result(f(args...))
		}
	}
	printer := func(f func(...any) string) func(...any) (string, error) {
		return func(args ...any) (string, error) {
			if err := before("", args); err != nil {
				return "", err
			}
			return result(f(args...))
		}
	}
	return template.FuncMap{
		workFunc: func(n int) (string, error) { return "", b.charge(n) },
		"getv": func(v any) (string, error) {
			if err := before("", []any{v}); err != nil {
				return "", err
			}
			return result(getv(v))
		},
		"print":    printer(fmt.Sprint),
		"println":  printer(fmt.Sprintln),
		"html":     escaper(template.HTMLEscaper),
		"js":       escaper(template.JSEscaper),
		"urlquery": escaper(template.URLQueryEscaper),
		"printf": func(format string, args ...any) (string, error) {
			if err := before(format, args); err != nil {
				return "", err
			}
			return result(fmt.Sprintf(format, args...))
		},
	}
}

// estimateSize is an upper bound, roughly, of the bytes fmt prints for
// args. Values come from the package's parameters: strings, numbers,
// booleans and slices of them.
func estimateSize(args []any) int {
	n := 0
	for _, a := range args {
		n += valueSize(reflect.ValueOf(a), 0)
	}
	return n
}

func valueSize(v reflect.Value, depth int) int {
	if !v.IsValid() || depth > 8 {
		return 16
	}
	switch v.Kind() {
	case reflect.String:
		// Quoting (%q, getv) can double a string; count it twice.
		return 2*v.Len() + 2
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return 16
		}
		return valueSize(v.Elem(), depth+1)
	case reflect.Slice, reflect.Array:
		n := 2
		for i := 0; i < v.Len(); i++ {
			n += 1 + valueSize(v.Index(i), depth+1)
			if n > limits.MaxTemplateValueBytes {
				return n
			}
		}
		return n
	case reflect.Map:
		n := 2
		it := v.MapRange()
		for it.Next() {
			n += 2 + valueSize(it.Key(), depth+1) + valueSize(it.Value(), depth+1)
			if n > limits.MaxTemplateValueBytes {
				return n
			}
		}
		return n
	default:
		return 32
	}
}

// placeholderFuncs lets a template parse: the real functions are bound per
// execution by meteredFuncs.
func placeholderFuncs() template.FuncMap {
	return meteredFuncs(&budget{})
}

// meter puts a charge at the start of every body of every template of t:
// the top level, each define and block, and each branch of if, with and
// range. Every execution of a body then pays for its nodes, which bounds
// loops and calls whatever drives them.
func meter(t *template.Template) {
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			meterList(tt.Tree.Root)
		}
	}
}

func meterList(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.IfNode:
			meterList(n.List)
			meterList(n.ElseList)
		case *parse.RangeNode:
			meterList(n.List)
			meterList(n.ElseList)
		case *parse.WithNode:
			meterList(n.List)
			meterList(n.ElseList)
		}
	}
	cost := int64(1 + len(l.Nodes))
	fn := parse.NewIdentifier(workFunc).SetPos(l.Pos)
	arg := &parse.NumberNode{NodeType: parse.NodeNumber, Pos: l.Pos, IsInt: true, Int64: cost, Text: fmt.Sprint(cost)}
	step := &parse.ActionNode{
		NodeType: parse.NodeAction,
		Pos:      l.Pos,
		Pipe: &parse.PipeNode{
			NodeType: parse.NodePipe,
			Pos:      l.Pos,
			Cmds:     []*parse.CommandNode{{NodeType: parse.NodeCommand, Pos: l.Pos, Args: []parse.Node{fn, arg}}},
		},
	}
	l.Nodes = append([]parse.Node{step}, l.Nodes...)
}

// executeGo runs the metered template with its own budget and a bounded
// output.
func (p *Package) executeGo(data any) ([]byte, error) {
	t, err := p.gotmpl.Clone()
	if err != nil {
		return nil, err
	}
	t.Funcs(meteredFuncs(&budget{left: limits.MaxTemplateWork}))
	out := &limitedBuffer{max: limits.MaxClusterSpecBytes}
	err = t.Execute(out, data)
	if out.over || errors.Is(err, errTooLarge) {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// limitedBuffer fails a write that would take it past max, and remembers
// it: the mustache library ignores the errors of some writes.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.over || b.Len()+len(p) > b.max {
		b.over = true
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}
