package apppkg

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

const goStartCmd = `"services": {"start": {"cmd": "/opt/kv/bin/ctl.sh start"}}`

// shellWarnings loads a package and returns its warnings about commands.
func shellWarnings(t *testing.T, files map[string]string) []string {
	t.Helper()
	var out []string
	for _, w := range mustLoad(t, files).Warnings {
		if strings.Contains(w, "would run as a shell command") {
			out = append(out, w)
		}
	}
	return out
}

// TestUnquotedParamInCmdWarns edits an OpenPitrix cluster.json.tmpl. Its
// tags end the JSON string they open and close ("{{x}}" becomes getv), so a
// tag inside a command is followed by more text: "cmd": "echo {{x}}" does
// not even parse.
func TestUnquotedParamInCmdWarns(t *testing.T) {
	tests := []struct {
		name string
		// edit of the master's services line of kvGoTemplate (line 13)
		services string
		prefix   string // put before the template
		want     []string
	}{
		{"OpenPitrix tag inside cmd", `"services": {"start": {"cmd": "/opt/kv/bin/ctl.sh start {{.cluster.name}} --now"}}`, "",
			[]string{"cluster.json.tmpl: line 13: parameter cluster.name is inserted into nodes[0].services.start.cmd without shell quoting: a value such as $(id) would run"}},
		{"the whole cmd", `"services": {"start": {"cmd": "{{.cluster.name}}"}}`, "",
			[]string{"cluster.json.tmpl: line 13: parameter cluster.name is inserted into nodes[0].services.start.cmd without shell quoting"}},
		{"double quotes", `"services": {"start": {"cmd": "ctl.sh start \" {{.cluster.name}}\" --now"}}`, "",
			[]string{"line 13: parameter cluster.name is inserted into nodes[0].services.start.cmd inside double quotes"}},
		{"single quotes, value may hold '", `"services": {"start": {"cmd": "ctl.sh start '{{.cluster.name}}' --now"}}`, "",
			[]string{"line 13: parameter cluster.name is inserted into nodes[0].services.start.cmd inside single quotes, which a ' in its value ends"}},
		{"password", `"services": {"start": {"cmd": "ctl.sh start --pass={{.env.requirepass}} --now"}}`, "",
			[]string{"line 13: parameter env.requirepass is inserted into nodes[0].services.start.cmd without shell quoting"}},
		{"pre_check", `"services": {"start": {"cmd": "true"}, "scale_in": {"cmd": "true", "pre_check": "check {{.cluster.description}} --now"}}`, "",
			[]string{"line 13: parameter cluster.description is inserted into nodes[0].services.scale_in.pre_check without shell quoting"}},
		{"through a variable", `"services": {"start": {"cmd": "ctl.sh start {{$n}} --now"}}`, "{{$n := .cluster.name}}",
			[]string{"cluster.json.tmpl: lines 1, 2: parameter cluster.name is inserted into nodes[0].services.start.cmd without shell quoting"}}, // every line that reads it
		{"two params, one line", `"services": {"start": {"cmd": "ctl.sh {{.cluster.name}} {{.cluster.description}} --now"}}`, "",
			[]string{"parameter cluster.name is inserted", "parameter cluster.description is inserted"}},

		// Values the shell cannot act on.
		{"a number", `"services": {"start": {"cmd": "ctl.sh start --port {{.env.port}} --now"}}`, "", nil},
		{"a boolean", `"services": {"start": {"cmd": "ctl.sh start {{.env.appendonly}} --now"}}`, "", nil},
		{"a range of safe values", `"services": {"start": {"cmd": "ctl.sh start {{index .env "maxmemory-policy"}} --now"}}`, "", nil},
		{"an anchored pattern of safe characters", `"services": {"start": {"cmd": "ctl.sh start {{.env.admin_user}} --now"}}`, "", nil},
		{"in env, not a command", `"services": {"start": {"cmd": "ctl.sh start"}}, "env": {"who": "{{.cluster.name}}"}`, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := kvFiles()
			delete(files, "cluster.json.mustache")
			files["cluster.json.tmpl"] = tt.prefix + edit(t, kvGoTemplate, goStartCmd, tt.services)
			got := shellWarnings(t, files)
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d containing %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not contain %q", got[i], w)
				}
			}
		})
	}
}

// TestUnquotedParamInMustache: AppCenter's form inserts strings as JSON
// literals, so a string reaches a command only as the whole of it.
func TestUnquotedParamInMustache(t *testing.T) {
	files := kvFiles()
	files["cluster.json.mustache"] = edit(t, kvMustache, `"init": {"cmd": "/opt/kv/bin/ctl.sh init"},`,
		`"init": {"cmd": {{cluster.description}}},`+"\n"+`      "upgrade": {"cmd": "/opt/kv/bin/ctl.sh upgrade {{cluster.master.cpu}}"},`)
	got := shellWarnings(t, files)
	if len(got) != 1 || !strings.Contains(got[0], "cluster.json.mustache: line 16: parameter cluster.description is inserted into nodes[0].services.init.cmd without shell quoting") {
		t.Fatalf("warnings %q", got)
	}
	if got := shellWarnings(t, kvFiles()); len(got) != 0 {
		t.Fatalf("the kv fixture warns: %q", got)
	}
}

func TestQuotingAt(t *testing.T) {
	for prefix, want := range map[string]quoting{
		"echo ":               unquoted,
		"echo '":              singleQuoted,
		`echo "`:              doubleQuoted,
		`echo "a" `:           unquoted,
		`echo "it's `:         doubleQuoted,
		`echo 'say "`:         singleQuoted,
		`echo \' `:            unquoted,
		`echo "\" `:           doubleQuoted,
		`echo 'a\' `:          unquoted, // no escapes inside single quotes
		`echo 'a' "b" 'c`:     singleQuoted,
		`echo "$(cat '/x') `:  doubleQuoted,
		`echo $(printf '%s' `: unquoted,
	} {
		if got := quotingAt(prefix); got != want {
			t.Errorf("quotingAt(%q) = %v, want %v", prefix, got, want)
		}
	}
}

func TestPatternChars(t *testing.T) {
	for pattern, safe := range map[string]bool{
		`^[a-z0-9]+$`:           true,
		`^[a-z][a-z0-9]{3,12}$`: true,
		`^\d+$`:                 true,
		`^\w+$`:                 true,
		`(?i)^[a-z_-]+$`:        true,
		`^[a-z]+$|^x$`:          true,
		`^(\d+\.){3}\d+$`:       true,
		`[a-z]+`:                false, // unanchored: anything around it matches too
		`^[a-z]+`:               false,
		`^.*$`:                  false,
		`^[^;]+$`:               false,
		`^[a-z ]+$`:             false,
		`^(a|b;c)$`:             false,
		`^[a-z]+$|x`:            false,
	} {
		it := &Item{Type: TypeString, Pattern: pattern, re: regexp.MustCompile(pattern)}
		if got := valueChars(it) == nil; got != safe {
			t.Errorf("pattern %q: safe = %v, want %v", pattern, got, safe)
		}
	}
}

// TestShellProbeFallsBackToOneParamAtATime: a template that cannot take a
// marker for one parameter still has the others checked, each on its own.
func TestShellProbeFallsBackToOneParamAtATime(t *testing.T) {
	files := kvFiles()
	delete(files, "cluster.json.mustache")
	tmpl := edit(t, kvGoTemplate, goStartCmd, `"services": {"start": {"cmd": "ctl.sh {{.cluster.name}} --now"}}`)
	// A string printed into a number: fine with its default "", not with
	// a marker.
	files["cluster.json.tmpl"] = edit(t, tmpl, `"count": "{{.cluster.master.count}}"`, `"count": {{.cluster.master.count}}{{.cluster.description}}`)
	got := shellWarnings(t, files)
	if len(got) != 1 || !strings.Contains(got[0], "line 13: parameter cluster.name is inserted into nodes[0].services.start.cmd") {
		t.Fatalf("warnings %q", got)
	}
}

// TestShellProbesAreBounded: past maxShellProbes single renders the rest
// is reported as not checked rather than rendered.
func TestShellProbesAreBounded(t *testing.T) {
	var params, uses []string
	for i := range maxShellProbes + 4 {
		params = append(params, fmt.Sprintf(`{"key": "p%d", "type": "string", "default": ""}`, i))
		uses = append(uses, fmt.Sprintf("{{.env.p%d}}", i))
	}
	files := map[string]string{
		"package.json": `{"name": "many", "version": "1.0.0"}`,
		"config.json": `{"type": "array", "properties": [
			{"key": "cluster", "type": "array", "properties": [{"key": "name", "type": "string", "default": "x"}]},
			{"key": "env", "type": "array", "properties": [` + strings.Join(params, ",") + `]}]}`,
		"cluster.json.tmpl": `{"name": "{{.cluster.name}}", "nodes": [{"container": {"type": "docker", "image": "x"},
			"count": 1` + strings.Join(uses, "") + `, "cpu": 1, "memory": 128, "services": {"start": {"cmd": "true"}}}]}`,
	}
	p := mustLoad(t, files)
	if !hasWarning(p.Warnings, fmt.Sprintf("parameters from env.p%d on were not checked for insertion into commands", maxShellProbes-1)) {
		t.Fatalf("warnings %q", p.Warnings)
	}
}
