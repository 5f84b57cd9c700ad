package apppkg

import (
	"testing"
)

// FuzzLoadConfig checks that no config.json makes the parser panic, and
// that a config it accepts resolves its own defaults without panicking.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(kvConfig))
	f.Add([]byte(rolelessFiles()["config.json"]))
	f.Add([]byte(`{"type": "array", "properties": [{"key": "env", "type": "array", "properties": [{"key": "a", "type": "number", "default": 1e400}]}]}`))
	f.Add([]byte(`{"type": "array", "properties": [{"key": "env", "type": "array", "properties": [{"key": "a", "type": "string", "range": [[1]], "default": "x"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var w warnings
		c, err := parseConfig(data, &w)
		if err != nil {
			return
		}
		p := &Package{Config: c}
		if v, err := p.resolve(nil, resolveLint); err == nil {
			_ = v.Strings()
		}
		_, _ = p.Resolve(map[string]string{"env.a": "1", "cluster.name": "x"})
	})
}

// FuzzRender checks that no cluster.json.mustache, with any value for one
// parameter, makes loading or rendering panic, and that a value never
// escapes its JSON literal: the rendered name is the given name.
func FuzzRender(f *testing.F) {
	f.Add(kvMustache, "kv")
	f.Add(`{"name": {{cluster.name}}, "nodes": [{"count": 1}]}`, `"}], "x": {`)
	f.Add(`{{#cluster.name}}{{/cluster.name}}`, "")
	f.Add(`{"name": {{{cluster.name}}}, "nodes": [{"count": {{cluster.master.count}}, "role": "m"}]}`, "\x00")
	f.Fuzz(func(t *testing.T, tmpl, name string) {
		files := map[string]file{
			fileMeta:     {data: []byte(kvMeta)},
			fileConfig:   {data: []byte(kvConfig)},
			fileMustache: {data: []byte(tmpl)},
		}
		p, err := load(files)
		if err != nil {
			return
		}
		v, err := p.Resolve(map[string]string{"cluster.name": name})
		if err != nil {
			return
		}
		spec, err := p.Render(v)
		if err != nil {
			return
		}
		_ = spec.Roles()
	})
}
