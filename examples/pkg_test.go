package examples_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/abtreece/confd/pkg/template"
	"github.com/cbroglie/mustache"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ---- config.json and cluster.json.mustache ----

// configItem is the part of a config.json item these tests read.
type configItem struct {
	Key        string       `json:"key"`
	Type       string       `json:"type"`
	Default    any          `json:"default"`
	Required   string       `json:"required"`
	Changeable *bool        `json:"changeable"`
	Range      []any        `json:"range"`
	Min        *float64     `json:"min"`
	Max        *float64     `json:"max"`
	Pattern    string       `json:"pattern"`
	Properties []configItem `json:"properties"`
}

func readConfig(t *testing.T, pkg string) configItem {
	t.Helper()
	var root configItem
	readJSON(t, filepath.Join(pkg, "config.json"), &root)
	if root.Type != "array" {
		t.Fatalf("%s/config.json: root type %q, want array", pkg, root.Type)
	}
	return root
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// find returns the item with key in items.
func find(t *testing.T, items []configItem, path ...string) configItem {
	t.Helper()
	for i, key := range path {
		found := false
		for _, it := range items {
			if it.Key == key {
				if i == len(path)-1 {
					return it
				}
				items, found = it.Properties, true
				break
			}
		}
		if !found {
			break
		}
	}
	t.Fatalf("config.json has no item %s", strings.Join(path, "."))
	return configItem{}
}

// params builds the mustache context the way the AppCenter format asks:
// every value a JSON literal (strings quoted, numbers bare), nested by the
// dotted path, defaults from config.json, then the overrides.
func params(t *testing.T, root configItem, overrides map[string]any) map[string]any {
	t.Helper()
	ctx := make(map[string]any)
	var walk func(prefix []string, items []configItem)
	walk = func(prefix []string, items []configItem) {
		for _, it := range items {
			p := append(append([]string(nil), prefix...), it.Key)
			if it.Type == "array" {
				walk(p, it.Properties)
				continue
			}
			v := it.Default
			if o, ok := overrides[strings.Join(p, ".")]; ok {
				v = o
			}
			lit, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			m := ctx
			for _, k := range p[:len(p)-1] {
				sub, ok := m[k].(map[string]any)
				if !ok {
					sub = make(map[string]any)
					m[k] = sub
				}
				m = sub
			}
			m[p[len(p)-1]] = string(lit)
		}
	}
	walk(nil, root.Properties)
	return ctx
}

func lookup(ctx map[string]any, dotted string) bool {
	var cur any = ctx
	for _, k := range strings.Split(dotted, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[k]; !ok {
			return false
		}
	}
	_, ok := cur.(string)
	return ok
}

// renderCluster renders pkg's cluster.json.mustache and decodes the spec.
func renderCluster(t *testing.T, pkg string, overrides map[string]any) map[string]any {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(pkg, "cluster.json.mustache"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := mustache.ParseStringRaw(string(src), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := params(t, readConfig(t, pkg), overrides)
	for _, tag := range tmpl.Tags() {
		if tag.Type() != mustache.Variable {
			t.Fatalf("%s: tag %q is a %s; the format uses plain {{path}} tags only", pkg, tag.Name(), tag.Type())
		}
		if !lookup(ctx, tag.Name()) {
			t.Fatalf("%s: tag {{%s}} names no config.json item", pkg, tag.Name())
		}
	}
	out, err := tmpl.Render(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&spec); err != nil {
		t.Fatalf("%s: rendered cluster.json is not JSON: %v\n%s", pkg, err, out)
	}
	return spec
}

// get walks a decoded JSON value by keys and array indexes.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not an object", path)
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("missing field %v (path %v)", k, path)
			}
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at %v: no element %d", path, k)
			}
			v = a[k]
		}
	}
	return v
}

// node returns the nodes entry of role.
func node(t *testing.T, spec map[string]any, role string) map[string]any {
	t.Helper()
	for _, n := range get(t, spec, "nodes").([]any) {
		if m := n.(map[string]any); m["role"] == role {
			return m
		}
	}
	t.Fatalf("no node with role %q", role)
	return nil
}

func TestKVPackageFiles(t *testing.T) {
	var pkg struct {
		Name, Version, AppVersion, Description string
		Maintainers                            []map[string]string
		Keywords                               []string
	}
	readJSON(t, "kv/package.json", &pkg)
	var raw map[string]any
	readJSON(t, "kv/package.json", &raw)
	if raw["name"] != "kv" || raw["version"] != "1.0.0" || raw["app_version"] != "1.0" {
		t.Fatalf("package.json = %v", raw)
	}
	if pkg.Description == "" || len(pkg.Maintainers) == 0 || len(pkg.Keywords) == 0 {
		t.Fatalf("package.json lacks description, maintainers or keywords: %v", raw)
	}

	root := readConfig(t, "kv")
	if c := find(t, root.Properties, "cluster", "primary", "count"); fmt.Sprint(c.Range) != "[1]" || c.Changeable == nil || *c.Changeable {
		t.Fatalf("primary count = %+v, want range [1], not changeable", c)
	}
	if c := find(t, root.Properties, "cluster", "replica", "count"); fmt.Sprint(c.Default) != "2" || *c.Min != 0 || *c.Max != 9 {
		t.Fatalf("replica count = %+v", c)
	}
	if p := find(t, root.Properties, "env", "port"); fmt.Sprint(p.Default) != "6380" || *p.Min != 1024 || *p.Max != 65535 || *p.Changeable {
		t.Fatalf("env port = %+v", p)
	}
	if m := find(t, root.Properties, "env", "motd"); m.Default != "hello from hangar" || !*m.Changeable {
		t.Fatalf("env motd = %+v", m)
	}

	spec := renderCluster(t, "kv", map[string]any{"cluster.replica.count": 3, "env.motd": `say "hi"`})
	if spec["name"] != "kv" || spec["vxnet"] != "" {
		t.Fatalf("name/vxnet = %v/%v", spec["name"], spec["vxnet"])
	}
	if got := get(t, spec, "endpoints", "kv", "port"); got != json.Number("6380") {
		t.Fatalf("endpoint port = %#v, want the number 6380", got)
	}
	if got := get(t, spec, "env", "motd"); got != `say "hi"` {
		t.Fatalf("env motd = %#v: strings must arrive as escaped JSON strings", got)
	}
	primary, replica := node(t, spec, "primary"), node(t, spec, "replica")
	if get(t, primary, "count") != json.Number("1") || get(t, replica, "count") != json.Number("3") {
		t.Fatalf("counts: primary %v replica %v", primary["count"], replica["count"])
	}
	for _, n := range []map[string]any{primary, replica} {
		if get(t, n, "container", "type") != "docker" || get(t, n, "container", "image") != "hangar/kv:1.0" {
			t.Fatalf("%s container = %v", n["role"], n["container"])
		}
	}
	// Primary starts first and stops last, so replicas always have
	// something to pull from.
	order := func(n map[string]any, svc string) string {
		return fmt.Sprint(get(t, n, "services", svc, "order"))
	}
	if order(primary, "start") >= order(replica, "start") || order(replica, "stop") >= order(primary, "stop") {
		t.Fatalf("orders: start p%s r%s, stop p%s r%s", order(primary, "start"), order(replica, "start"), order(primary, "stop"), order(replica, "stop"))
	}
}

// ---- confd templates ----

// host is one node in the metadata tree.
type host struct {
	role, iid, ip string
	sid           int
}

// metadata is an in-memory confd StoreClient over the metadata tree of a
// cluster as one node sees it (the drone's /self view).
type metadata map[string]string

func newMetadata(self host, hosts []host, env map[string]string) metadata {
	m := metadata{}
	put := func(prefix string, h host) {
		m[prefix+"/ip"] = h.ip
		m[prefix+"/role"] = h.role
		m[prefix+"/instance_id"] = h.iid
		m[prefix+"/node_id"] = "cln-" + h.iid
		m[prefix+"/sid"] = strconv.Itoa(h.sid)
		m[prefix+"/cpu"] = "1"
		m[prefix+"/memory"] = "1024"
	}
	put("/self/host", self)
	for _, h := range hosts {
		put("/self/hosts/"+h.role+"/"+h.iid, h)
	}
	m["/self/cluster/cluster_id"] = "cl-test"
	for k, v := range env {
		m["/self/env/"+k] = v
	}
	return m
}

func (m metadata) GetValues(keys []string) (map[string]string, error) {
	out := make(map[string]string)
	for _, k := range keys {
		dir := strings.TrimSuffix(k, "/") + "/"
		for key, v := range m {
			if key == k || strings.HasPrefix(key, dir) {
				out[key] = v
			}
		}
	}
	return out, nil
}

func (metadata) WatchPrefix(string, []string, uint64, chan bool) (uint64, error) {
	return 0, errors.New("metadata: watch not supported in tests")
}

// tomlTemplate is the [template] table of a conf.d file.
type tomlTemplate struct {
	Template struct {
		Src       string   `toml:"src"`
		Dest      string   `toml:"dest"`
		Keys      []string `toml:"keys"`
		ReloadCmd string   `toml:"reload_cmd"`
		CheckCmd  string   `toml:"check_cmd"`
		Mode      string   `toml:"mode"`
	} `toml:"template"`
}

// renderConfd renders every conf.d file of pkg into root the way the drone
// does: prefix /self, each dest placed under root. reload runs the
// reload_cmd (through /bin/sh -c, in this process's environment) when the
// output changed. It returns the conf.d files by dest.
func renderConfd(t *testing.T, pkg, root string, md metadata, reload bool) map[string]tomlTemplate {
	t.Helper()
	confDir := t.TempDir()
	confD := filepath.Join(confDir, "conf.d")
	if err := os.MkdirAll(confD, 0o755); err != nil {
		t.Fatal(err)
	}
	tomls, err := filepath.Glob(filepath.Join(pkg, "confd", "conf.d", "*.toml"))
	if err != nil || len(tomls) == 0 {
		t.Fatalf("%s: no confd/conf.d/*.toml (%v)", pkg, err)
	}
	byDest := make(map[string]tomlTemplate)
	for _, p := range tomls {
		var tt tomlTemplate
		if _, err := toml.DecodeFile(p, &tt); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		byDest[tt.Template.Dest] = tt
		dest := filepath.Join(root, tt.Template.Dest)
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			t.Fatal(err)
		}
		rewritten := fmt.Sprintf("[template]\nsrc = %q\ndest = %q\nkeys = [%s]\nreload_cmd = %q\ncheck_cmd = %q\n",
			tt.Template.Src, dest, quoteAll(tt.Template.Keys), tt.Template.ReloadCmd, tt.Template.CheckCmd)
		if tt.Template.Mode != "" {
			rewritten += fmt.Sprintf("mode = %q\n", tt.Template.Mode)
		}
		if err := os.WriteFile(filepath.Join(confD, filepath.Base(p)), []byte(rewritten), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err = template.Process(template.Config{
		ConfDir:     confDir,
		ConfigDir:   confD,
		TemplateDir: filepath.Join(pkg, "confd", "templates"),
		Prefix:      "/self",
		StoreClient: md,
		SyncOnly:    !reload,
	})
	if err != nil {
		t.Fatalf("%s: confd: %v", pkg, err)
	}
	return byDest
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// configLines returns the key = value lines of a rendered hangar-kv config.
func configLines(text string) map[string]string {
	out := make(map[string]string)
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

func TestKVTemplate(t *testing.T) {
	hosts := []host{
		{role: "primary", iid: "i-p1", ip: "10.0.0.5", sid: 1},
		{role: "replica", iid: "i-r1", ip: "10.0.0.6", sid: 2},
		{role: "replica", iid: "i-r2", ip: "10.0.0.7", sid: 3},
	}
	env := map[string]string{"port": "6380", "motd": "hello from hangar"}
	tests := []struct {
		self host
		want map[string]string
	}{
		{hosts[0], map[string]string{"role": "primary", "listen": "10.0.0.5:6380", "primary": "10.0.0.5:6380", "motd": "hello from hangar"}},
		{hosts[2], map[string]string{"role": "replica", "listen": "10.0.0.7:6380", "primary": "10.0.0.5:6380", "motd": "hello from hangar"}},
	}
	for _, tt := range tests {
		t.Run(tt.self.role, func(t *testing.T) {
			root := t.TempDir()
			confs := renderConfd(t, "kv", root, newMetadata(tt.self, hosts, env), false)
			if _, ok := confs["/opt/kv/kv.conf"]; !ok {
				t.Fatalf("no conf.d file renders /opt/kv/kv.conf: %v", confs)
			}
			got := configLines(readFile(t, filepath.Join(root, "opt/kv/kv.conf")))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("rendered %v, want %v", got, tt.want)
			}
		})
	}

	// An empty motd renders an empty value, which hangar-kv accepts.
	root := t.TempDir()
	renderConfd(t, "kv", root, newMetadata(hosts[1], hosts, map[string]string{"port": "7000", "motd": ""}), false)
	if got := configLines(readFile(t, filepath.Join(root, "opt/kv/kv.conf"))); got["motd"] != "" || got["listen"] != "10.0.0.6:7000" {
		t.Fatalf("rendered %v", got)
	}
}
