package apppkg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const kvMeta = `{"name": "kvstore", "version": "1.0.0", "app_version": "7.2", "description": "a test key-value store",
  "maintainers": ["ops", {"name": "Ada", "email": "ada@example.com"}], "keywords": ["kv"]}`

const kvConfig = `{
  "type": "array",
  "properties": [{
    "key": "cluster", "description": "cluster properties", "type": "array",
    "properties": [
      {"key": "name", "label": "Name", "type": "string", "default": "kv", "required": "no"},
      {"key": "description", "type": "string", "default": "", "required": "no"},
      {"key": "vxnet", "type": "string", "default": "", "required": "yes"},
      {"key": "zk_service", "type": "service", "default": "", "required": "no", "limits": {"app-zk": []}, "tag": ["ZK"]},
      {"key": "master", "type": "array", "properties": [
        {"key": "cpu", "type": "integer", "default": 1, "range": [1, 2, 4], "required": "yes"},
        {"key": "memory", "type": "integer", "default": 1024, "range": [1024, 2048], "required": "yes"},
        {"key": "count", "type": "integer", "default": 1, "min": 1, "max": 1, "required": "yes"},
        {"key": "volume_size", "type": "integer", "default": 10, "min": 10, "max": 100, "step": 10, "required": "yes", "resource_group": [10, 20]}
      ]},
      {"key": "replica", "type": "array", "properties": [
        {"key": "cpu", "type": "integer", "default": 1, "range": [1, 2, 4], "required": "yes"},
        {"key": "memory", "type": "integer", "default": 1024, "required": "yes"},
        {"key": "count", "type": "integer", "default": 2, "min": 0, "max": 9, "required": "yes"}
      ]}
    ]
  }, {
    "key": "env", "type": "array",
    "properties": [
      {"key": "port", "type": "integer", "default": 6379, "min": 1, "max": 65535, "changeable": false},
      {"key": "requirepass", "type": "password", "default": "", "required": "no"},
      {"key": "maxmemory-policy", "type": "string", "default": "volatile-lru", "range": ["volatile-lru", "allkeys-lru", "noeviction"]},
      {"key": "4lw.commands.whitelist", "type": "string", "default": "srvr", "range": ["srvr", "ruok", "stat"], "multichoice": true},
      {"key": "ratio", "type": "number", "default": 0.75, "min": 0, "max": 1},
      {"key": "appendonly", "type": "boolean", "default": true},
      {"key": "admin_user", "type": "string", "default": "admin", "pattern": "^[a-z][a-z0-9]{3,12}$"},
      {"key": "replica", "type": "array", "properties": [
        {"key": "lag", "type": "integer", "default": 10, "min": 0}
      ]}
    ]
  }, {
    "key": "service_params", "type": "array",
    "properties": [
      {"key": "master", "type": "array", "properties": [
        {"key": "node.ip", "type": "string", "pattern": "^(\\d+\\.){3}\\d+$", "required": "yes"},
        {"key": "force", "type": "boolean", "default": false}
      ]}
    ]
  }]
}`

const kvMustache = `{
  "name": {{cluster.name}},
  "description": {{cluster.description}},
  "vxnet": {{cluster.vxnet}},
  "links": {"zk": {{cluster.zk_service}}},
  "multi_zone_policy": "round_robin",
  "advanced_actions": ["scale_horizontal"],
  "nodes": [{
    "role": "master",
    "container": {"type": "docker", "image": "redis:7.2"},
    "count": {{cluster.master.count}},
    "cpu": {{cluster.master.cpu}},
    "memory": {{cluster.master.memory}},
    "volume": {"size": {{cluster.master.volume_size}}, "mount_point": "/data"},
    "services": {
      "init": {"cmd": "/opt/kv/bin/ctl.sh init"},
      "start": {"cmd": "/opt/kv/bin/ctl.sh start", "order": 1},
      "stop": {"cmd": "/opt/kv/bin/ctl.sh stop", "order": 2},
      "repair": {"type": "custom", "cmd": "/opt/kv/bin/ctl.sh repair", "timeout": 1200,
        "service_params": {"node.ip": {{service_params.master.node.ip}}, "force_it": {{service_params.master.force}}}}
    }
  }, {
    "role": "replica",
    "container": {"type": "docker", "image": "redis:7.2"},
    "count": {{cluster.replica.count}},
    "cpu": {{cluster.replica.cpu}},
    "memory": {{cluster.replica.memory}},
    "env": {"lag": {{env.replica.lag}}},
    "services": {
      "start": {"cmd": "/opt/kv/bin/ctl.sh start", "order": 2},
      "stop": {"cmd": "/opt/kv/bin/ctl.sh stop", "order": 1}
    },
    "health_check": {"enable": true, "check_cmd": "/opt/kv/bin/ctl.sh check"}
  }],
  "env": {
    "port": {{env.port}},
    "requirepass": {{env.requirepass}},
    "maxmemory-policy": {{env.maxmemory-policy}},
    "4lw.commands.whitelist": {{env.4lw.commands.whitelist}},
    "ratio": {{env.ratio}},
    "appendonly": {{env.appendonly}},
    "admin_user": {{env.admin_user}}
  },
  "endpoints": {"client": {"port": "env.port", "protocol": "tcp"}, "reserved_ips": {"vip": {"value": ""}}}
}`

const kvToml = `[template]
src = "kv.conf.tmpl"
dest = "/etc/kv/kv.conf"
keys = ["/"]
reload_cmd = "/opt/kv/bin/ctl.sh reload"
mode = "0644"
`

const kvTemplate = `port {{getv "/env/port"}}
{{range lsdir "/hosts/replica"}}replica {{.}}
{{end}}`

// kvFiles returns a fresh copy of a valid two-role package.
func kvFiles() map[string]string {
	return map[string]string{
		"package.json":                 kvMeta,
		"config.json":                  kvConfig,
		"cluster.json.mustache":        kvMustache,
		"confd/conf.d/kv.conf.toml":    kvToml,
		"confd/templates/kv.conf.tmpl": kvTemplate,
		"locale/zh-cn.json":            `{"repair": "修复"}`,
		"README.md":                    "# kv\n",
	}
}

// roleless is a single-node-entry app whose node has no role, like
// ZooKeeper's package.
func rolelessFiles() map[string]string {
	return map[string]string{
		"package.json": `{"name": "zk", "version": "3.4.13"}`,
		"config.json": `{"type": "array", "properties": [
		  {"key": "cluster", "type": "array", "properties": [
		    {"key": "name", "type": "string", "default": "ZooKeeper"},
		    {"key": "zk_node", "type": "array", "properties": [
		      {"key": "count", "type": "integer", "default": 3, "range": [0, 1, 3, 5]}
		    ]}
		  ]},
		  {"key": "env", "type": "array", "properties": [
		    {"key": "tickTime", "type": "integer", "default": 2000, "min": 1}
		  ]}
		]}`,
		"cluster.json.mustache": `{
		  "name": {{cluster.name}}, "description": "", "vxnet": "",
		  "nodes": [{
		    "container": {"type": "kvm", "image": "img-zk", "zone": "pek3a"},
		    "count": {{cluster.zk_node.count}}, "cpu": 1, "memory": 2048,
		    "volume": {"size": 10},
		    "server_id_upper_bound": 255,
		    "services": {"start": {"cmd": "/opt/zk/start.sh"}}
		  }],
		  "env": {"tickTime": {{env.tickTime}}, "zkVersion": "3.4.13"}
		}`,
	}
}

// writePkg writes files into a new temporary folder.
func writePkg(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadFiles(t *testing.T, files map[string]string) (*Package, error) {
	t.Helper()
	return LoadDir(writePkg(t, files))
}

func mustLoad(t *testing.T, files map[string]string) *Package {
	t.Helper()
	p, err := loadFiles(t, files)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

// edit replaces old with new in s and fails the test when old is absent,
// so a fixture change cannot silently turn a test into a no-op.
func edit(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("fixture does not contain %q", old)
	}
	return strings.Replace(s, old, new, 1)
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func hasWarning(ws []string, parts ...string) bool {
	for _, w := range ws {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(w, p)
		}
		if ok {
			return true
		}
	}
	return false
}
