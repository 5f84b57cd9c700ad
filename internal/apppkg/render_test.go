package apppkg

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func renderKV(t *testing.T, files map[string]string, params map[string]string) *ClusterSpec {
	t.Helper()
	p := mustLoad(t, files)
	v, err := p.Resolve(params)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestRender(t *testing.T) {
	spec := renderKV(t, kvFiles(), map[string]string{"cluster.zk_service": "cl-zk",
		"cluster.replica.count": "3", "env.4lw.commands.whitelist": "srvr,stat"})
	if spec.Name != "kv" || spec.VXNet != PlatformNetwork || spec.Links["zk"] != "cl-zk" {
		t.Fatalf("top level = %q %q %v", spec.Name, spec.VXNet, spec.Links)
	}
	wantEnv := Env{"port": "6379", "requirepass": "", "maxmemory-policy": "volatile-lru",
		"4lw.commands.whitelist": "srvr,stat", "ratio": "0.75", "appendonly": "true", "admin_user": "admin"}
	if !reflect.DeepEqual(spec.Env, wantEnv) {
		t.Fatalf("env = %v, want %v", spec.Env, wantEnv)
	}
	if got := spec.Roles(); !reflect.DeepEqual(got, []string{"master", "replica"}) {
		t.Fatalf("roles = %v", got)
	}
	m, r := spec.Nodes[0], spec.Nodes[1]
	if m.Count != 1 || r.Count != 3 || m.CPU != 1 || m.Memory != 1024 || m.Container != (Container{Type: "docker", Image: "redis:7.2"}) {
		t.Fatalf("master = %+v", m)
	}
	if !m.AgentInstalled || !r.AgentInstalled {
		t.Fatal("agent_installed must default to true")
	}
	wantVol := &Volume{Size: 10, MountPoint: MountPoints{"/data"}, Filesystem: "ext4", MountOptions: "defaults,noatime"}
	if !reflect.DeepEqual(m.Volume, wantVol) || r.Volume != nil {
		t.Fatalf("volumes = %+v / %+v", m.Volume, r.Volume)
	}
	if !reflect.DeepEqual(r.Env, Env{"lag": "10"}) {
		t.Fatalf("replica env = %v", r.Env)
	}
	start, ok := m.Service("start")
	if !ok || start.Order != 1 || start.Timeout != DefaultServiceTimeout || !start.AllowForce || start.IsCustom() {
		t.Fatalf("start = %+v", start)
	}
	if _, ok := r.Service("init"); ok {
		t.Fatal("replica has no init service")
	}
	repair, ok := m.Service("repair")
	if !ok || !repair.IsCustom() || repair.Timeout != 1200 {
		t.Fatalf("repair = %+v", repair)
	}
	if !reflect.DeepEqual(repair.ServiceParams, map[string]any{"node.ip": "", "force_it": false}) {
		t.Fatalf("repair params = %#v", repair.ServiceParams)
	}
	wantPaths := map[string]string{"node.ip": "service_params.master.node.ip", "force_it": "service_params.master.force"}
	if !reflect.DeepEqual(repair.ParamPaths, wantPaths) {
		t.Fatalf("param paths = %v", repair.ParamPaths)
	}
	if port, err := spec.EndpointPort("client"); err != nil || port != "6379" {
		t.Fatalf("client port = %q, %v", port, err)
	}
	if spec.Endpoints["client"].Protocol != "tcp" || spec.ReservedIPs["vip"] != (ReservedIP{}) {
		t.Fatalf("endpoints = %+v reserved %+v", spec.Endpoints, spec.ReservedIPs)
	}
	if string(spec.PlatformHints["multi_zone_policy"]) != `"round_robin"` {
		t.Fatalf("hints = %s", spec.PlatformHints)
	}
	if !spec.AllowsAction("replica", "scale_horizontal") || spec.AllowsAction("replica", "change_vxnet") {
		t.Fatal("AllowsAction does not follow advanced_actions")
	}
	if r.HealthCheck == nil || r.HealthCheck.IntervalSec != 60 || r.HealthCheck.UnhealthyThreshold != 3 || !r.HealthCheck.Enable {
		t.Fatalf("health check defaults = %+v", r.HealthCheck)
	}
}

func TestRenderEscapesValues(t *testing.T) {
	name := `my "kv" </script> & \ ` + "\u00e9\u4e2d\n\t"
	spec := renderKV(t, kvFiles(), map[string]string{"cluster.name": name, "env.requirepass": `p"w{{x}}`})
	if spec.Name != name {
		t.Fatalf("name = %q, want %q", spec.Name, name)
	}
	if spec.Env["requirepass"] != `p"w{{x}}` {
		t.Fatalf("a value that looks like a tag must stay a value: %q", spec.Env["requirepass"])
	}
}

func TestRenderEndpointRefFollowsEnv(t *testing.T) {
	files := kvFiles()
	files["config.json"] = edit(t, kvConfig, `"min": 1, "max": 65535, "changeable": false`, `"min": 1, "max": 65535, "changeable": true`)
	p := mustLoad(t, files)
	v, _ := p.Resolve(nil)
	v2, err := v.ChangeEnv(map[string]string{"port": "7001"})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.Render(v2)
	if err != nil {
		t.Fatal(err)
	}
	if port, _ := spec.EndpointPort("client"); port != "7001" {
		t.Fatalf("port = %s, want 7001", port)
	}
}

// TestTemplateErrors covers templates refused when the package loads.
func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name  string
		old   string
		new   string
		parts []string
	}{
		{"unknown tag", `"name": {{cluster.name}}`, `"name": {{cluster.nmae}}`,
			[]string{"cluster.json.mustache: line 2: tag {{cluster.nmae}}", `unknown parameter "cluster.nmae"`}},
		{"docs sample bug", `"admin_user": {{env.admin_user}}`, `"admin_user": {{env.admin.user}}`,
			[]string{"tag {{env.admin.user}}", "did you mean env.admin_user?"}},
		{"section", `"name": {{cluster.name}}`, `"name": {{#cluster.name}}"x"{{/cluster.name}}`,
			[]string{"line 2", `section tag "cluster.name"`, "only plain {{path}} tags"}},
		{"inverted section", `"name": {{cluster.name}}`, `"name": {{^cluster.name}}"x"{{/cluster.name}}`,
			[]string{"invertedsection tag"}},
		{"partial", `"name": {{cluster.name}}`, `"name": {{> /etc/passwd}}`, []string{`partial tag "/etc/passwd"`}},
		{"unclosed tag", `"name": {{cluster.name}}`, `"name": {{cluster.name`, []string{"cluster.json.mustache: line 2: malformed tag {{cluster.name,", `a missing "}}"?`}},
		{"trailing comma", `"admin_user": {{env.admin_user}}`, `"admin_user": {{env.admin_user}},`,
			[]string{"cluster.json.mustache, rendered with the default values: invalid JSON at line 43, column 3"}},
		{"unknown field", `"services": {
      "start": {"cmd": "/opt/kv/bin/ctl.sh start", "order": 2},`, `"servics": {
      "start": {"cmd": "/opt/kv/bin/ctl.sh start", "order": 2},`,
			[]string{"nodes[1].servics: unknown field; allowed here:", "services"}},
		{"unknown nested field", `"init": {"cmd": "/opt/kv/bin/ctl.sh init"}`, `"init": {"cmd": "/opt/kv/bin/ctl.sh init", "timout": 5}`,
			[]string{"nodes[0].services.init.timout: unknown field"}},
		{"unknown top field", `"multi_zone_policy": "round_robin",`, `"multi_zone_policy": "round_robin", "placement": "x",`,
			[]string{"placement: unknown field"}},
		{"string count", `"count": {{cluster.master.count}}`, `"count": "1"`, []string{"nodes[0].count: want an integer, got string"}},
		{"fractional cpu", `"cpu": {{cluster.master.cpu}}`, `"cpu": 1.5`, []string{"nodes[0].cpu: want an integer, got 1.5"}},
		{"nodes not array", `"nodes": [{`, `"nodez": [{`, []string{"nodez: unknown field"}},
		{"custom service without type", `"repair": {"type": "custom",`, `"repair": {`,
			[]string{`nodes[0].services.repair: not a system service`, `a custom service needs "type": "custom"`}},
		{"bad service type", `"repair": {"type": "custom",`, `"repair": {"type": "builtin",`, []string{`nodes[0].services.repair.type: "builtin" is not allowed`}},
		{"custom service named like system", `"init": {"cmd": "/opt/kv/bin/ctl.sh init"}`, `"init": {"type": "custom", "cmd": "x"}`,
			[]string{"nodes[0].services.init.type: init is a system service"}},
		{"custom without cmd", `"cmd": "/opt/kv/bin/ctl.sh repair", "timeout": 1200`, `"timeout": 1200`, []string{"nodes[0].services.repair.cmd: required"}},
		{"timeout too long", `"timeout": 1200`, `"timeout": 86401`, []string{"nodes[0].services.repair.timeout: 86401: must be 1..86400"}},
		{"timeout zero", `"timeout": 1200`, `"timeout": 0`, []string{"nodes[0].services.repair.timeout: 0"}},
		{"post_start on start", `"start": {"cmd": "/opt/kv/bin/ctl.sh start", "order": 1}`, `"start": {"cmd": "x", "order": 1, "post_start_service": true}`,
			[]string{"nodes[0].services.start.post_start_service: applies only to init and upgrade"}},
		{"post_stop on stop", `"stop": {"cmd": "/opt/kv/bin/ctl.sh stop", "order": 2}`, `"stop": {"cmd": "x", "post_stop_service": true}`,
			[]string{"nodes[0].services.stop.post_stop_service: applies only to destroy"}},
		{"pre_check on start", `"start": {"cmd": "/opt/kv/bin/ctl.sh start", "order": 1}`, `"start": {"cmd": "x", "pre_check": "y"}`,
			[]string{"nodes[0].services.start.pre_check: applies only to scale_in, scale_out and upgrade"}},
		{"allow_force on stop", `"stop": {"cmd": "/opt/kv/bin/ctl.sh stop", "order": 2}`, `"stop": {"cmd": "x", "allow_force": false}`,
			[]string{"nodes[0].services.stop.allow_force: applies only to destroy"}},
		{"negative order", `"order": 1}`, `"order": -1}`, []string{"nodes[0].services.start.order: -1: must be 0 or more"}},
		{"replica role suffix", `"role": "replica"`, `"role": "db-replica"`, []string{`nodes[1].role: "db-replica": the suffix -replica is reserved`}},
		{"duplicate role", `"role": "replica"`, `"role": "master"`, []string{`nodes[1].role: "master" is already used by nodes[0]`}},
		{"missing role", `"role": "replica",`, ``, []string{"nodes[1].role: required when cluster.json has several node entries"}},
		{"role with slash", `"role": "replica"`, `"role": "rep/lica"`, []string{`nodes[1].role: "rep/lica": letters, digits`}},
		{"container type", `"type": "docker", "image": "redis:7.2"}`, `"type": "vm", "image": "redis:7.2"}`,
			[]string{`nodes[0].container.type: "vm" is not allowed; allowed: kvm, docker, lxc`}},
		{"filesystem", `"mount_point": "/data"}`, `"mount_point": "/data", "filesystem": "zfs"}`, []string{`nodes[0].volume.filesystem: "zfs" is not allowed`}},
		{"relative mount point", `"mount_point": "/data"}`, `"mount_point": ["data"]}`, []string{`nodes[0].volume.mount_point[0]: "data": must be an absolute path`}},
		{"too many mount points", `"mount_point": "/data"}`, `"mount_point": ["/a", "/b", "/c", "/d"]}`, []string{"4 mount points; at most 3"}},
		{"endpoint ref unknown", `"port": "env.port"`, `"port": "env.prot"`, []string{`endpoints.client.port: "env.prot": the cluster env has no "prot"`}},
		{"endpoint ref role", `"port": "env.port"`, `"port": "replica.env.lag"`, nil},
		{"endpoint ref bad role", `"port": "env.port"`, `"port": "nobody.env.lag"`, []string{`no role "nobody"`}},
		{"endpoint port range", `"port": "env.port"`, `"port": 70000`, []string{"endpoints.client.port: 70000: must be 0..65535"}},
		{"advanced action", `"advanced_actions": ["scale_horizontal"]`, `"advanced_actions": ["scale_up"]`,
			[]string{`advanced_actions[0]: "scale_up" is not allowed; allowed: scale_horizontal`}},
		{"health check interval", `"health_check": {"enable": true,`, `"health_check": {"enable": true, "interval_sec": 0,`,
			[]string{"nodes[1].health_check.interval_sec: 0: must be 1 or more"}},
		{"health check without cmd", `"health_check": {"enable": true, "check_cmd": "/opt/kv/bin/ctl.sh check"}`, `"health_check": {"enable": true}`,
			[]string{"nodes[1].health_check.check_cmd: required when enable is true"}},
		{"agent not installed", `"role": "replica",`, `"role": "replica", "agent_installed": false,`,
			[]string{"nodes[1].agent_installed: false, but the role has services with commands"}},
		{"serial and max_in_flight", `"role": "replica",`, `"role": "replica", "serial": true, "max_in_flight": 2,`,
			[]string{"nodes[1].max_in_flight: set together with serial"}},
		{"env key with slash", `"lag": {{env.replica.lag}}`, `"lag/x": {{env.replica.lag}}`, []string{`nodes[1].env["lag/x"]`, "metadata path segment"}},
		{"no nodes", `"nodes": [{`, `"nodes": [], "x": [{`, []string{"x: unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := kvFiles()
			files["cluster.json.mustache"] = edit(t, kvMustache, tt.old, tt.new)
			_, err := loadFiles(t, files)
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

func TestTemplateTagConflict(t *testing.T) {
	files := kvFiles()
	files["config.json"] = edit(t, kvConfig, `{"key": "ratio",`, `{"key": "ratio.max", "type": "integer", "default": 1}, {"key": "ratio",`)
	files["cluster.json.mustache"] = edit(t, kvMustache, `"ratio": {{env.ratio}},`, `"ratio": {{env.ratio}}, "ratio.max": {{env.ratio.max}},`)
	_, err := loadFiles(t, files)
	wantErr(t, err, "tags {{env.ratio}} and {{env.ratio.max}} cannot both be used")
}

func TestRenderTotalCount(t *testing.T) {
	files := rolelessFiles()
	p := mustLoad(t, files)
	v, err := p.Resolve(map[string]string{"cluster.zk_node.count": "0"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Render(v)
	wantErr(t, err, "render cluster.json.mustache", "nodes: the total node count is 0")
}

func TestRenderNoNodes(t *testing.T) {
	files := rolelessFiles()
	files["cluster.json.mustache"] = `{"name": {{cluster.name}}, "nodes": [], "env": {"t": {{env.tickTime}}, "c": {{cluster.zk_node.count}}}}`
	_, err := loadFiles(t, files)
	wantErr(t, err, "nodes: at least one node entry is required")
}

func TestRenderRoleless(t *testing.T) {
	p := mustLoad(t, rolelessFiles())
	v, err := p.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := spec.Node("")
	if !ok || len(spec.Nodes) != 1 || n.Count != 3 || n.ServerIDUpperBound != 255 || n.Container.Zone != "pek3a" {
		t.Fatalf("node = %+v", n)
	}
	if !reflect.DeepEqual(spec.Env, Env{"tickTime": "2000", "zkVersion": "3.4.13"}) {
		t.Fatalf("env = %v", spec.Env)
	}
	_, err = p.Resolve(map[string]string{"cluster.zk_node.count": "2"})
	wantErr(t, err, "cluster.zk_node.count: 2 is not one of: 0, 1, 3, 5")
}

func TestRenderServerIDBound(t *testing.T) {
	files := rolelessFiles()
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"server_id_upper_bound": 255`, `"server_id_upper_bound": 3`)
	files["config.json"] = edit(t, files["config.json"], `"range": [0, 1, 3, 5]`, `"range": [0, 1, 3, 5, 7]`)
	p := mustLoad(t, files)
	v, _ := p.Resolve(map[string]string{"cluster.zk_node.count": "5"})
	_, err := p.Render(v)
	wantErr(t, err, "nodes[0].count: 5 nodes exceed server_id_upper_bound 3")
}

func TestRenderNotYetWarnings(t *testing.T) {
	files := kvFiles()
	files["cluster.json.mustache"] = edit(t, kvMustache, `"advanced_actions": ["scale_horizontal"],`, `"advanced_actions": ["scale_horizontal"],
	  "backup_policy": "device", "incremental_backup_supported": false, "upgrade_policy": ["appv-1"],
	  "need_tag": true, "exclude_node_columns": ["eip"],
	  "monitor": {"enable": true, "cmd": "m", "items": {"hits": {"value_type": "int", "statistics_type": "delta"}},
	    "groups": {"g": ["hits"]}, "display": ["g"], "alarm": ["hits"]},
	  "display_tabs": {"t": {"cmd": "c", "roles_to_execute_on": ["master"], "timeout": 5}},`)
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"role": "replica",`,
		`"role": "replica", "replica": 0, "passphraseless": "ssh-rsa", "custom_metadata": {"cmd": "tok"}, "user_access": false,`)
	spec := renderKV(t, files, nil)
	// Upgrades and backups run (hangar cluster upgrade, backup), monitor
	// commands too (drone/metrics): no warning.
	for _, w := range []string{"monitor", "upgrade_policy", "backup_policy", "nodes[1].custom_metadata", "nodes[1].passphraseless", "display_tabs"} {
		if hasWarning(spec.Warnings, w) {
			t.Errorf("%s warned about: %q", w, spec.Warnings)
		}
	}
	for _, w := range []string{"need_tag", "exclude_node_columns"} {
		if !hasWarning(spec.Warnings, w+": QingCloud platform hint") {
			t.Errorf("no hint warning for %s in %q", w, spec.Warnings)
		}
	}
	// Values that ask for nothing do not warn.
	for _, w := range []string{"incremental_backup_supported", "nodes[1].replica", "nodes[1].user_access"} {
		if hasWarning(spec.Warnings, w+":") {
			t.Errorf("unexpected warning for %s in %q", w, spec.Warnings)
		}
	}
	if spec.Monitor == nil || spec.Monitor.Items["hits"].StatisticsType != "delta" || spec.BackupPolicy != "device" ||
		spec.Nodes[1].Passphraseless != "ssh-rsa" || spec.DisplayTabs["t"].Timeout != 5 {
		t.Fatal("not-yet fields must be kept in the spec")
	}
	if len(spec.PlatformHints) != 3 {
		t.Fatalf("hints = %v", spec.PlatformHints)
	}
}

func TestRenderMonitorChecks(t *testing.T) {
	tests := []struct {
		monitor string
		parts   []string
	}{
		{`{"enable": true, "cmd": "m", "items": {"a": {"value_type": "float"}}}`, []string{`monitor.items.a.value_type: "float" is not allowed`}},
		{`{"enable": true, "cmd": "m", "items": {"a": {"value_type": "str", "statistics_type": "avg"}}}`, []string{`monitor.items.a.statistics_type: "avg" is not allowed; allowed: mode, latest`}},
		{`{"enable": true, "cmd": "m", "items": {"a": {}}, "groups": {"g": ["b"]}}`, []string{`monitor.groups.g[0]: "b": no such item`}},
		{`{"enable": true, "cmd": "m", "items": {"a": {}}, "display": ["z"]}`, []string{`monitor.display[0]: "z": no such item or group`}},
		{`{"enable": true, "items": {}}`, []string{"monitor.cmd: required when enable is true"}},
		{`{"enable": true, "cmd": "m", "interval_sec": 0, "items": {}}`, []string{"monitor.interval_sec: 0: must be 1 or more (default 10)"}},
		{`{"enable": true, "cmd": "m", "items": {"a": {"statistics_type": "sum"}}}`, []string{`monitor.items.a.statistics_type: "sum" is not allowed; allowed: min, max, avg, delta, rate, mode, median, latest`}},
		{`{"enable": true, "cmd": "m", "items": {"a": {"statistics_type": ""}}}`, []string{"monitor.items.a.statistics_type: empty; allowed: min, max"}},
		{`{"enable": true, "cmd": "m", "items": {"a": {"scale_factor_when_display": -1}}}`, []string{"monitor.items.a.scale_factor_when_display: -1: must be above 0 (default 1)"}},
		{`{"enable": true, "cmd": "m", "items": {"a": {"value_type": "str", "enums": ["x", "x"]}}}`, []string{`monitor.items.a.enums[1]: "x": listed twice`}},
	}
	for _, tt := range tests {
		files := kvFiles()
		files["cluster.json.mustache"] = edit(t, kvMustache, `"multi_zone_policy": "round_robin",`, `"monitor": `+tt.monitor+`,`)
		_, err := loadFiles(t, files)
		wantErr(t, err, tt.parts...)
	}
}

func TestRenderRefusesForeignValues(t *testing.T) {
	p1 := mustLoad(t, kvFiles())
	p2 := mustLoad(t, kvFiles())
	v, _ := p1.Resolve(nil)
	_, err := p2.Render(v)
	wantErr(t, err, "not resolved by this package")
	_, err = p2.Render(nil)
	wantErr(t, err, "not resolved by this package")
}

const kvGoTemplate = `{
  "name": "{{.cluster.name}}",
  "description": "{{.cluster.description}}",
  "subnet": "{{.cluster.vxnet}}",
  "links": {"zk": "{{.cluster.zk_service}}"},
  "nodes": [{
    "role": "master",
    "container": {"type": "docker", "image": "redis:7.2"},
    "count": "{{.cluster.master.count}}",
    "cpu": "{{.cluster.master.cpu}}",
    "memory": "{{.cluster.master.memory}}",
    "volume": {"size": "{{.cluster.master.volume_size}}"},
    "services": {"start": {"cmd": "/opt/kv/bin/ctl.sh start"}}
  }, {
    "role": "replica",
    "container": {"type": "docker", "image": "redis:7.2"},
    "count": "{{.cluster.replica.count}}",
    "cpu": "{{.cluster.replica.cpu}}",
    "memory": "{{.cluster.replica.memory}}",
    "env": {"lag": "{{.env.replica.lag}}"}
  }],
  "env": {
    "port": "{{.env.port}}",
    "policy": "{{index .env "maxmemory-policy"}}",
    "appendonly": "{{.env.appendonly}}",
    "ratio": "{{.env.ratio}}"
  }
}`

func TestRenderGoTemplate(t *testing.T) {
	files := kvFiles()
	delete(files, "cluster.json.mustache")
	files["cluster.json.tmpl"] = kvGoTemplate
	p := mustLoad(t, files)
	if p.TemplateKind != KindGoTemplate {
		t.Fatalf("kind = %s", p.TemplateKind)
	}
	v, err := p.Resolve(map[string]string{"cluster.name": `a "quoted" name`})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name != `a "quoted" name` || spec.VXNet != PlatformNetwork || spec.Nodes[0].Count != 1 || spec.Nodes[1].Count != 2 || spec.Nodes[0].Volume.Size != 10 {
		t.Fatalf("spec = %+v", spec)
	}
	if !reflect.DeepEqual(spec.Env, Env{"port": "6379", "policy": "volatile-lru", "appendonly": "true", "ratio": "0.75"}) {
		t.Fatalf("env = %v", spec.Env)
	}

	files["cluster.json.tmpl"] = edit(t, kvGoTemplate, `"{{.env.port}}"`, `"{{.env.prot}}"`)
	_, err = loadFiles(t, files)
	wantErr(t, err, "cluster.json.tmpl", "prot")
	files["cluster.json.tmpl"] = edit(t, kvGoTemplate, `"{{.env.port}}"`, `"{{.env.port}"`)
	_, err = loadFiles(t, files)
	wantErr(t, err, "cluster.json.tmpl")
}

func TestServiceArgs(t *testing.T) {
	p := mustLoad(t, kvFiles())
	v, _ := p.Resolve(nil)
	spec, err := p.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	args, err := p.ServiceArgs(spec, "master", "repair", map[string]string{"node.ip": "10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(args, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, map[string]any{"node.ip": "10.0.0.7", "force_it": false}) {
		t.Fatalf("args = %s", args)
	}
	args, err = p.ServiceArgs(spec, "master", "repair", map[string]string{"node.ip": "10.0.0.7", "force_it": "true"})
	if err != nil || !strings.Contains(string(args), `"force_it":true`) {
		t.Fatalf("args = %s, %v", args, err)
	}

	tests := []struct {
		name          string
		role, service string
		params        map[string]string
		parts         []string
	}{
		{"required missing", "master", "repair", nil, []string{`parameter "node.ip" (service_params.master.node.ip) is required`}},
		{"pattern", "master", "repair", map[string]string{"node.ip": "nine"}, []string{`parameter "node.ip" (service_params.master.node.ip): "nine" does not match`}},
		{"wrong type", "master", "repair", map[string]string{"node.ip": "1.2.3.4", "force_it": "maybe"}, []string{`"force_it"`, "not a boolean"}},
		{"unknown", "master", "repair", map[string]string{"node.ip": "1.2.3.4", "nodeip": "x"}, []string{`unknown parameter "nodeip"; allowed: ["force_it","node.ip"]`}},
		{"no such service", "master", "compact", nil, []string{"role \"master\" has no such service"}},
		{"no such role", "arbiter", "repair", nil, []string{`no role "arbiter"`}},
		{"params to a service without any", "master", "start", map[string]string{"x": "1"}, []string{`unknown parameter "x"; allowed: none`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.ServiceArgs(spec, tt.role, tt.service, tt.params)
			wantErr(t, err, tt.parts...)
		})
	}
	if args, err := p.ServiceArgs(spec, "master", "start", nil); err != nil || string(args) != "{}" {
		t.Fatalf("start args = %s, %v", args, err)
	}
}

func TestTagLines(t *testing.T) {
	got := tagLines("{\n \"a\": {{x.y}},\n\n \"b\": {{{ z }}}, {{&w}}\n{{! note }}{{x.y}}")
	want := map[string]int{"x.y": 2, "z": 4, "w": 4, "note": 5}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tagLines = %v, want %v", got, want)
	}
}
