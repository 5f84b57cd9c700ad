package confdfuncs

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"text/template"

	"github.com/kelseyhightower/memkv"
)

// store is a small metadata tree as a drone's /self view gives it: every
// value a string.
func store() *memkv.Store {
	s := memkv.New()
	for k, v := range map[string]string{
		"/host/sid":                   "2",
		"/host/memory":                "256",
		"/host/ip":                    "10.0.0.2",
		"/hosts/i-a/sid":              "1",
		"/hosts/i-b/sid":              "2",
		"/hosts/i-c/sid":              "10",
		"/adding-hosts/i-c/sid":       "10",
		"/env/ratio":                  "0.75",
		"/env/port":                   "2181",
		"/env/name":                   "zk",
		"/env/4lw.commands.whitelist": "srvr,ruok",
	} {
		s.Set(k, v)
	}
	return &s
}

func render(t *testing.T, text string) (string, error) {
	t.Helper()
	tmpl, err := template.New("t").Funcs(New(store())).Parse(text)
	if err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	var b bytes.Buffer
	err = tmpl.Execute(&b, nil)
	return b.String(), err
}

// The fork's additions, with the edges templates meet: numbers given as
// strings, floats beside integers, empty lists, regular expressions that
// match mid-string, and values that are not numbers.
func TestQingCloudFunctions(t *testing.T) {
	tests := []struct {
		name, tmpl, want, err string
	}{
		// add sub mul div: strings are numbers; integers stay integers.
		{"add strings", `{{add "1" "2"}}`, "3", ""},
		{"sub from a key", `{{sub (getv "/host/sid") 1}}`, "1", ""},
		{"mul string by int", `{{mul (getv "/host/memory") 1024}}`, "262144", ""},
		{"div truncates integers", `{{div 7 2}}`, "3", ""},
		{"div with a float", `{{div "7" "2.0"}}`, "3.5", ""},
		{"add float and int", `{{add (getv "/env/ratio") 1}}`, "1.75", ""},
		{"add negative", `{{add "-3" 1}}`, "-2", ""},
		{"spaces around a number", `{{add " 4 " 1}}`, "5", ""},
		{"div by zero", `{{div 1 0}}`, "", "division by zero"},
		{"div by zero float", `{{div 1.5 "0.0"}}`, "", "division by zero"},
		{"add a word", `{{add "x" 1}}`, "", `add: "x" is not a number`},
		{"sub empty string", `{{sub "" 1}}`, "", `sub: "" is not a number`},
		{"mul a list", `{{mul (ls "/hosts") 2}}`, "", "is not a number"},
		// mod: integers only.
		{"mod strings", `{{mod "7" "3"}}`, "1", ""},
		{"mod float", `{{mod "7.5" 2}}`, "", "integers only"},
		{"mod by zero", `{{mod 7 0}}`, "", "division by zero"},
		// max min: floats, printed without a fraction when there is none.
		{"max strings", `{{max "3" "10"}}`, "10", ""},
		{"min mixed", `{{min (getv "/env/ratio") 1}}`, "0.75", ""},
		{"max nested", `{{max 1 (min 4 "2")}}`, "2", ""},
		{"min a word", `{{min "a" 1}}`, "", "is not a number"},
		// eq ne: numeric when both sides are numbers.
		{"eq string and int", `{{eq (getv "/host/sid") 2}}`, "true", ""},
		{"eq 1.0 and 1", `{{eq "1.0" "1"}}`, "true", ""},
		{"eq strings", `{{eq (getv "/env/name") "zk"}}`, "true", ""},
		{"eq string and number", `{{eq "zk" 0}}`, "false", ""},
		{"eq several", `{{eq "b" "a" "b" "c"}}`, "true", ""},
		{"ne", `{{ne (getv "/host/sid") "02"}}`, "false", ""},
		// lt le gt ge: numbers, strings, lists by length.
		{"gt numbers as strings", `{{gt "10" "9"}}`, "true", ""},
		{"lt words", `{{lt "apple" "banana"}}`, "true", ""},
		{"ge equal words", `{{ge "b" "b"}}`, "true", ""},
		{"gt list by length", `{{gt (lsdir "/hosts") 2}}`, "true", ""},
		{"le empty list", `{{le (lsdir "/deleting-hosts") 0}}`, "true", ""},
		{"lt float and int", `{{lt (getv "/env/ratio") 1}}`, "true", ""},
		// filter: unanchored, on strings and on pairs' values.
		{"filter mid-string", `{{join (lsdir "/hosts" | filter "-b") ","}}`, "i-b", ""},
		{"filter anchored", `{{join (filter "^i-[ab]$" (lsdir "/hosts")) ","}}`, "i-a,i-b", ""},
		{"filter the adding hosts", `{{range $d := lsdir "/hosts"}}{{if lsdir "/adding-hosts" | filter $d}}{{$d}}{{end}}{{end}}`, "i-c", ""},
		{"filter pairs by value", `{{range gets "/hosts/*/sid" | filter "^1"}}{{.Key}}={{.Value}};{{end}}`, "/hosts/i-a/sid=1;/hosts/i-c/sid=10;", ""},
		{"filter an empty list", `{{len (lsdir "/nothing" | filter ".")}}`, "0", ""},
		{"filter a bad regexp", `{{filter "(" (ls "/hosts")}}`, "", "filter: error parsing regexp"},
		{"filter a string", `{{filter "a" "abc"}}`, "", "takes a list"},
		// toJson toYaml.
		{"toJson a list", `{{toJson (lsdir "/hosts")}}`, `["i-a","i-b","i-c"]`, ""},
		{"toJson a map", `{{toJson (map "port" (getv "/env/port"))}}`, `{"port":"2181"}`, ""},
		{"toJson empty", `{{toJson (lsdir "/nothing")}}`, `[]`, ""},
		{"toYaml", `{{toYaml (split (getv "/env/4lw.commands.whitelist") ",")}}`, "- srvr\n- ruok\n", ""},
		// base64 both ways, seq, reverse, sortByLength.
		{"base64", `{{base64Decode (base64Encode "zk:2181")}}`, "zk:2181", ""},
		{"seq", `{{seq 1 3}}`, "[1 2 3]", ""},
		{"seq empty", `{{len (seq 3 1)}}`, "0", ""},
		{"seq too long", `{{seq 1 100000000}}`, "", "seq of more than"},
		{"reverse", `{{join (reverse (lsdir "/hosts")) ","}}`, "i-c,i-b,i-a", ""},
		{"sortByLength", `{{join (sortByLength (split "ccc,a,bb" ",")) ","}}`, "a,bb,ccc", ""},
		{"lookupV4IP", `{{range lookupV4IP "127.0.0.1"}}{{.}}{{end}}`, "127.0.0.1", ""},
		// The stock ones are there too.
		{"getv default", `{{getv "/env/missing" "d"}}`, "d", ""},
		{"base of gets", `{{range gets "/env/*"}}{{base .Key}} {{end}}`, "4lw.commands.whitelist name port ratio ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render(t, tt.tmpl)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("%s: got %q, %v; want an error with %q", tt.tmpl, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("%s = %q, %v; want %q", tt.tmpl, got, err, tt.want)
			}
		})
	}
}

func TestSeqErrorIsTyped(t *testing.T) {
	_, err := render(t, `{{seq 0 1000000000}}`)
	if !errors.Is(err, ErrSeqTooLong) {
		t.Fatalf("got %v, want ErrSeqTooLong", err)
	}
}

func TestNamesCoverNew(t *testing.T) {
	names := Names()
	for _, want := range []string{"filter", "toJson", "toYaml", "min", "max", "lookupV4IP", "getv", "lsdir", "eq", "seq"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("Names() lacks %q", want)
		}
	}
	if len(names) != len(New(nil))+len(store().FuncMap) {
		t.Errorf("Names() has %d names, New has %d functions", len(names), len(New(nil))+len(store().FuncMap))
	}
}
