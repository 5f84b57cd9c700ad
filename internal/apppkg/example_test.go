package apppkg

import (
	"testing"
)

// helloFiles is the minimal package of docs/app-packages.md; keep them in
// step.
func helloFiles() map[string]string {
	return map[string]string{
		"package.json": `{"name": "hello", "version": "1.0.0", "app_version": "1.27", "description": "nginx serving a greeting"}`,
		"config.json": `{
  "type": "array",
  "properties": [{
    "key": "cluster", "type": "array", "properties": [
      {"key": "name", "type": "string", "default": "hello"},
      {"key": "web", "type": "array", "properties": [
        {"key": "count", "type": "integer", "default": 2, "min": 1, "max": 10},
        {"key": "memory", "type": "integer", "default": 512, "range": [512, 1024]}
      ]}
    ]
  }, {
    "key": "env", "type": "array", "properties": [
      {"key": "greeting", "type": "string", "default": "hello", "pattern": "^[a-z ]{1,40}$"}
    ]
  }]
}`,
		"cluster.json.mustache": `{
  "name": {{cluster.name}},
  "description": "",
  "vxnet": "",
  "nodes": [{
    "role": "web",
    "container": {"type": "docker", "image": "nginx:1.27"},
    "count": {{cluster.web.count}},
    "cpu": 1,
    "memory": {{cluster.web.memory}},
    "services": {
      "start": {"cmd": "nginx"},
      "stop": {"cmd": "nginx -s quit"}
    }
  }],
  "env": {"greeting": {{env.greeting}}},
  "endpoints": {"http": {"port": 80, "protocol": "http"}}
}`,
		"confd/conf.d/index.toml": `[template]
src = "index.html.tmpl"
dest = "/usr/share/nginx/html/index.html"
keys = ["/"]
`,
		"confd/templates/index.html.tmpl": `<p>{{getv "/env/greeting"}} from {{getv "/host/ip"}}</p>
<ul>{{range lsdir "/hosts/web"}}<li>{{.}}</li>{{end}}</ul>
`,
	}
}

func TestDocExample(t *testing.T) {
	p := mustLoad(t, helloFiles())
	if len(p.Warnings) != 0 {
		t.Fatalf("the documented example must load without warnings: %q", p.Warnings)
	}
	v, err := p.Resolve(map[string]string{"cluster.web.count": "3", "env.greeting": "hi there"})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := spec.Node("web"); n.Count != 3 || spec.Env["greeting"] != "hi there" {
		t.Fatalf("spec = %+v", spec)
	}
	_, err = p.Resolve(map[string]string{"env.greeting": "Hi!"})
	wantErr(t, err, `env.greeting: "Hi!" does not match the pattern ^[a-z ]{1,40}$`)
	_, err = p.Resolve(map[string]string{"cluster.web.memory": "768"})
	wantErr(t, err, "768 is not one of: 512, 1024")
}
