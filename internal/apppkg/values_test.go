package apppkg

import (
	"reflect"
	"strings"
	"testing"
)

func TestResolveDefaults(t *testing.T) {
	p := mustLoad(t, kvFiles())
	v, err := p.Resolve(map[string]string{"env.requirepass": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cluster.name": "kv", "cluster.description": "", "cluster.vxnet": PlatformNetwork, "cluster.zk_service": "",
		"cluster.master.cpu": "1", "cluster.master.memory": "1024", "cluster.master.count": "1", "cluster.master.volume_size": "10",
		"cluster.replica.cpu": "1", "cluster.replica.memory": "1024", "cluster.replica.count": "2",
		"env.port": "6379", "env.requirepass": "s3cret", "env.maxmemory-policy": "volatile-lru",
		"env.4lw.commands.whitelist": "srvr", "env.ratio": "0.75", "env.appendonly": "true", "env.admin_user": "admin",
		"env.replica.lag":             "10",
		"service_params.master.force": "false",
		// service_params.master.node.ip has no default: left out, and not
		// demanded although required, since it is given when the service runs.
	}
	if got := v.Strings(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Strings() =\n%v\nwant\n%v", got, want)
	}
	if !v.Secret("env.requirepass") || v.Secret("env.port") || v.Secret("env.nope") {
		t.Fatal("Secret must be true exactly for password parameters")
	}
	if x, _ := v.Get("env.port"); x != int64(6379) {
		t.Fatalf("env.port = %#v, want int64 6379", x)
	}
	if x, _ := v.Get("env.ratio"); x != 0.75 {
		t.Fatalf("env.ratio = %#v", x)
	}
	if x, _ := v.Get("env.appendonly"); x != true {
		t.Fatalf("env.appendonly = %#v", x)
	}

	// Stored values resolve back to the same values.
	again, err := p.Resolve(v.Strings())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.Strings(), v.Strings()) || !reflect.DeepEqual(again.vals, v.vals) {
		t.Fatal("Resolve(v.Strings()) does not give v back")
	}
}

func TestResolveConverts(t *testing.T) {
	p := mustLoad(t, kvFiles())
	v, err := p.Resolve(map[string]string{
		"env.port": " 7000 ", "env.ratio": "0.5", "env.appendonly": "FALSE",
		"env.4lw.commands.whitelist": "srvr,ruok", "cluster.replica.count": "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{"env.port": int64(7000), "env.ratio": 0.5, "env.appendonly": false,
		"env.4lw.commands.whitelist": "srvr,ruok", "cluster.replica.count": int64(0)} {
		if got, _ := v.Get(path); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		parts  []string
	}{
		{"unknown parameter", map[string]string{"env.portt": "1"}, []string{`unknown parameter "env.portt"`}},
		{"unknown with hint", map[string]string{"env.4lw_commands_whitelist": "srvr"}, []string{"did you mean env.4lw.commands.whitelist?"}},
		{"unknown role key", map[string]string{"cluster.master.gpu": "1"}, []string{`unknown parameter "cluster.master.gpu"`}},
		{"no group prefix", map[string]string{"port": "1"}, []string{"parameter paths start with cluster., env. or service_params.", "did you mean env.port"}},
		{"not an integer", map[string]string{"env.port": "80a"}, []string{`env.port: "80a" is not an integer`}},
		{"fraction for integer", map[string]string{"env.port": "80.5"}, []string{`env.port: "80.5" is not an integer`}},
		{"not a number", map[string]string{"env.ratio": "half"}, []string{`env.ratio: "half" is not a number`}},
		{"NaN", map[string]string{"env.ratio": "NaN"}, []string{`env.ratio: "NaN" is not a number`}},
		{"not a boolean", map[string]string{"env.appendonly": "yes"}, []string{`env.appendonly: "yes" is not a boolean; allowed: true, false`}},
		{"below min", map[string]string{"env.port": "0"}, []string{"env.port: 0 is below the minimum 1"}},
		{"above max", map[string]string{"env.port": "70000"}, []string{"env.port: 70000 is above the maximum 65535"}},
		{"number above max", map[string]string{"env.ratio": "1.5"}, []string{"env.ratio: 1.5 is above the maximum 1"}},
		{"not in range", map[string]string{"cluster.master.cpu": "3"}, []string{"cluster.master.cpu: 3 is not one of: 1, 2, 4"}},
		{"enum string", map[string]string{"env.maxmemory-policy": "lru"}, []string{`env.maxmemory-policy: lru is not one of: volatile-lru, allkeys-lru, noeviction`}},
		{"multichoice bad part", map[string]string{"env.4lw.commands.whitelist": "srvr,kill"}, []string{`env.4lw.commands.whitelist: "kill" is not one of: srvr, ruok, stat`}},
		{"step", map[string]string{"cluster.master.volume_size": "15"}, []string{"cluster.master.volume_size: 15 is not a multiple of the step 10"}},
		{"pattern", map[string]string{"env.admin_user": "Admin"}, []string{`env.admin_user: "Admin" does not match the pattern ^[a-z][a-z0-9]{3,12}$`}},
		{"platform network given", map[string]string{"cluster.vxnet": "vxnet-1"}, []string{"cluster.vxnet: set by Hangar", "leave it out"}},
		{"negative count", map[string]string{"cluster.replica.count": "-1"}, []string{"cluster.replica.count: -1: a node count must be 0 or more"}},
		{"service param pattern", map[string]string{"service_params.master.node.ip": "host"}, []string{`service_params.master.node.ip: "host" does not match`}},
		{"valid value", map[string]string{"env.port": "1"}, nil},
		{"several at once", map[string]string{"env.port": "x", "env.ratio": "y"}, []string{"env.port", "env.ratio"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustLoad(t, kvFiles())
			_, err := p.Resolve(tt.params)
			if tt.parts == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantErr(t, err, tt.parts...)
		})
	}
}

func TestResolveRequiredWithoutDefault(t *testing.T) {
	files := kvFiles()
	files["config.json"] = edit(t, kvConfig, `{"key": "requirepass", "type": "password", "default": "", "required": "no"}`,
		`{"key": "requirepass", "type": "password", "required": "yes"}`)
	p := mustLoad(t, files) // loading renders with a zero value instead
	_, err := p.Resolve(nil)
	wantErr(t, err, "env.requirepass: required, and config.json gives no default")
	if _, err := p.Resolve(map[string]string{"env.requirepass": "pw"}); err != nil {
		t.Fatal(err)
	}
}

func TestResolveBadDefault(t *testing.T) {
	files := kvFiles()
	files["config.json"] = edit(t, kvConfig, `"default": 6379, "min": 1, "max": 65535`, `"default": 70000, "min": 1, "max": 65535`)
	p := mustLoad(t, files)
	if !hasWarning(p.Warnings, "env.port", "default does not pass its own checks") {
		t.Fatalf("no warning about the default: %q", p.Warnings)
	}
	_, err := p.Resolve(nil)
	wantErr(t, err, "env.port: default from config.json: 70000 is above the maximum 65535")
	if _, err := p.Resolve(map[string]string{"env.port": "80"}); err != nil {
		t.Fatalf("a valid given value must replace the bad default: %v", err)
	}
}

func TestChangeEnv(t *testing.T) {
	p := mustLoad(t, kvFiles())
	v, err := p.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	nv, err := v.ChangeEnv(map[string]string{"maxmemory-policy": "allkeys-lru", "replica.lag": "20"})
	if err != nil {
		t.Fatal(err)
	}
	if x, _ := nv.Get("env.maxmemory-policy"); x != "allkeys-lru" {
		t.Fatalf("changed value = %v", x)
	}
	if x, _ := nv.Get("env.replica.lag"); x != int64(20) {
		t.Fatalf("changed role value = %v", x)
	}
	if x, _ := v.Get("env.maxmemory-policy"); x != "volatile-lru" {
		t.Fatal("ChangeEnv modified the original Values")
	}
	spec, err := p.Render(nv)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Env["maxmemory-policy"] != "allkeys-lru" || spec.Nodes[1].Env["lag"] != "20" {
		t.Fatalf("re-rendered env = %v / %v", spec.Env, spec.Nodes[1].Env)
	}

	tests := []struct {
		name    string
		changes map[string]string
		parts   []string
	}{
		{"not changeable", map[string]string{"port": "7000"}, []string{"env port: cannot be changed after the cluster is created (changeable is false"}},
		{"unknown", map[string]string{"maxmemory": "1"}, []string{`unknown parameter "maxmemory"`}},
		{"with env prefix", map[string]string{"env.ratio": "0.1"}, []string{`unknown parameter "env.ratio"`, "did you mean ratio"}},
		{"bad value", map[string]string{"ratio": "2"}, []string{"env.ratio: 2 is above the maximum 1"}},
		{"not env", map[string]string{"master.cpu": "2"}, []string{`unknown parameter "master.cpu"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.ChangeEnv(tt.changes)
			wantErr(t, err, tt.parts...)
		})
	}
}

func TestValueLiterals(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{"plain", `"plain"`},
		{`quote " backslash \ newline` + "\n", `"quote \" backslash \\ newline\n"`},
		{"<script>&", `"<script>&"`},
		{int64(-42), "-42"},
		{int64(8589934592), "8589934592"},
		{0.75, "0.75"},
		{1e21, "1e+21"},
		{float64(3), "3"},
		{true, "true"},
		{[]any{}, "[]"},
		{[]any{map[string]any{"port": "80"}}, `[{"port":"80"}]`},
	}
	for _, tt := range tests {
		if got := jsonLiteral(tt.v); got != tt.want {
			t.Errorf("jsonLiteral(%#v) = %s, want %s", tt.v, got, tt.want)
		}
	}
}

func TestLoadbalancerValues(t *testing.T) {
	files := kvFiles()
	files["config.json"] = edit(t, kvConfig, `{"key": "count", "type": "integer", "default": 2, "min": 0, "max": 9, "required": "yes"}`,
		`{"key": "count", "type": "integer", "default": 2, "min": 0, "max": 9, "required": "yes"},
		 {"key": "loadbalancer", "type": "loadbalancer", "port": 80, "default": [], "required": "no"}`)
	files["cluster.json.mustache"] = edit(t, kvMustache, `"count": {{cluster.replica.count}},`,
		`"count": {{cluster.replica.count}}, "loadbalancer": {{cluster.replica.loadbalancer}},`)
	p := mustLoad(t, files)
	v, err := p.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Nodes[1].Loadbalancer) != 0 || hasWarning(spec.Warnings, "loadbalancer") {
		t.Fatalf("an empty loadbalancer must neither appear nor warn: %v %q", spec.Nodes[1].Loadbalancer, spec.Warnings)
	}
	v, err = p.Resolve(map[string]string{"cluster.replica.loadbalancer": `[{"listener": "lbl-1", "port": 80}]`})
	if err != nil {
		t.Fatal(err)
	}
	spec, err = p.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Nodes[1].Loadbalancer) != 1 || !hasWarning(spec.Warnings, "nodes[1].loadbalancer", "not yet executed") {
		t.Fatalf("loadbalancer = %s, warnings %q", spec.Nodes[1].Loadbalancer, spec.Warnings)
	}
	_, err = p.Resolve(map[string]string{"cluster.replica.loadbalancer": `{"listener": "lbl-1"}`})
	wantErr(t, err, "cluster.replica.loadbalancer", "is not a JSON array")
	if s := v.Strings()["cluster.replica.loadbalancer"]; !strings.HasPrefix(s, `[{"listener":"lbl-1"`) {
		t.Fatalf("stored loadbalancer = %s", s)
	}
}

// A required parameter whose default is empty is refused when a cluster is
// created, as when the user gives it empty: before anything is created,
// and never later by a re-resolve of the stored values.
func TestRequiredWithEmptyDefault(t *testing.T) {
	files := kvFiles()
	files["config.json"] = edit(t, files["config.json"], `{"key": "zk_service", "type": "service", "default": "", "required": "no"`,
		`{"key": "zk_service", "type": "service", "default": "", "required": "yes"`)
	p := mustLoad(t, files)
	_, err := p.Resolve(map[string]string{"env.requirepass": "x"})
	wantErr(t, err, "cluster.zk_service: required, and config.json's default is empty: give a value")
	_, err = p.Resolve(map[string]string{"env.requirepass": "x", "cluster.zk_service": ""})
	wantErr(t, err, "cluster.zk_service: required; must not be empty")
	v, err := p.Resolve(map[string]string{"env.requirepass": "x", "cluster.zk_service": "cl-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Resolve(v.Strings()); err != nil {
		t.Fatalf("stored values do not resolve again: %v", err)
	}
}

// dependencies: a parameter applies only while another's value is (in) or
// is not (nin) one of a list; changeable_when_create: false fixes it to its
// default at create.
func TestDependenciesAndFixedAtCreate(t *testing.T) {
	files := kvFiles()
	files["config.json"] = edit(t, files["config.json"], `{"key": "admin_user", "type": "string", "default": "admin", "pattern": "^[a-z][a-z0-9]{3,12}$"},`,
		`{"key": "admin_user", "type": "string", "default": "admin", "pattern": "^[a-z][a-z0-9]{3,12}$"},
		 {"key": "tls", "type": "boolean", "default": false},
		 {"key": "tls_cert", "type": "string", "required": "yes", "dependencies": [{"refkey": "tls", "values": [true]}]},
		 {"key": "plain_port", "type": "integer", "default": 80, "dependencies": [{"refkey": "env.tls", "values": [true], "operator": "nin"}]},
		 {"key": "engine", "type": "string", "default": "rocks", "changeable_when_create": false},`)
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"admin_user": {{env.admin_user}}`,
		`"admin_user": {{env.admin_user}}, "tls": {{env.tls}}, "tls_cert": {{env.tls_cert}}, "plain_port": {{env.plain_port}}, "engine": {{env.engine}}`)
	p := mustLoad(t, files)
	base := map[string]string{"env.requirepass": "x"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		params map[string]string
		errs   []string
	}{
		{"dependency off: required not demanded", with(), nil},
		{"dependency off: value refused", with("env.tls_cert", "c"), []string{`env.tls_cert applies only when env.tls is one of true; it is "false"; leave it out`}},
		{"dependency on: required demanded", with("env.tls", "true"), []string{"env.tls_cert: required"}},
		{"dependency on: given", with("env.tls", "true", "env.tls_cert", "c"), nil},
		{"nin: value refused while tls", with("env.tls", "true", "env.tls_cert", "c", "env.plain_port", "81"), []string{"env.plain_port applies only when env.tls is not one of true"}},
		{"nin: value taken without tls", with("env.plain_port", "81"), nil},
		{"fixed at create", with("env.engine", "lmdb"), []string{"env.engine: fixed by the app (changeable_when_create: false)"}},
		{"fixed at create, its default", with("env.engine", "rocks"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := p.Resolve(tt.params)
			if tt.errs != nil {
				wantErr(t, err, tt.errs...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Resolve(v.Strings()); err != nil {
				t.Fatalf("stored values do not resolve again: %v", err)
			}
		})
	}

	bad := edit(t, files["config.json"], `"refkey": "tls"`, `"refkey": "tsl"`)
	_, err := parseConfig([]byte(bad), &warnings{})
	wantErr(t, err, `parameter env.tls_cert: dependencies[0].refkey "tsl": names no parameter`)
	bad = edit(t, files["config.json"], `"operator": "nin"`, `"operator": "not"`)
	_, err = parseConfig([]byte(bad), &warnings{})
	wantErr(t, err, `dependencies: [0].operator "not": allowed: in, nin`)
}

// A role-less app's count is cluster.count, or the count of its one role
// array (AppCenter's ZooKeeper: cluster.zk_node.count).
func TestCountPathOfRolelessApps(t *testing.T) {
	p := mustLoad(t, rolelessFiles())
	if got := p.Config.CountPath(""); got != "cluster.zk_node.count" {
		t.Fatalf("role-less count path %q", got)
	}
	v, err := p.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	nv, err := v.ChangeCount("", 5)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := nv.Get("cluster.zk_node.count"); got != int64(5) {
		t.Fatalf("count = %v", got)
	}
	if _, err := v.ChangeCount("", 4); err == nil {
		t.Fatal("a count outside the range was taken")
	}
	if got := mustLoad(t, kvFiles()).Config.CountPath("replica"); got != "cluster.replica.count" {
		t.Fatalf("role count path %q", got)
	}
}
