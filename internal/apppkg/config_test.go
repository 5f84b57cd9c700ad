package apppkg

import (
	"testing"
)

func TestConfigErrors(t *testing.T) {
	wrap := func(items string) string {
		return `{"type": "array", "properties": [{"key": "env", "type": "array", "properties": [` + items + `]}]}`
	}
	tests := []struct {
		name   string
		config string
		parts  []string
	}{
		{"bad json", "{\n  \"type\": \"array\",\n  \"properties\": [\n    {\"key\": \"env\" \"type\": \"array\"}\n  ]\n}",
			[]string{"config.json: invalid JSON at line 4, column 19"}},
		{"truncated", `{"type": "array", "properties": [`, []string{"config.json: invalid JSON: unexpected end of file"}},
		{"two values", `{"type": "array", "properties": []} {}`, []string{"unexpected data after the top-level JSON value"}},
		{"root is array", `[{"key": "env"}]`, []string{"the root must be an object", "got array"}},
		{"root type", `{"type": "object", "properties": []}`, []string{`root: "type" must be "array"`}},
		{"root properties", `{"type": "array", "properties": {}}`, []string{`"properties" must be an array`}},
		{"root unknown field", `{"type": "array", "properties": [], "version": 2}`, []string{`root: unknown field "version"`}},
		{"unknown group", `{"type": "array", "properties": [{"key": "settings", "type": "array", "properties": []}]}`,
			[]string{`unknown group "settings"`, "allowed: cluster, env, service_params"}},
		{"group twice", `{"type": "array", "properties": [{"key": "env", "type": "array", "properties": []},{"key": "env", "type": "array", "properties": []}]}`,
			[]string{`group "env" appears twice`}},
		{"group without properties", `{"type": "array", "properties": [{"key": "env", "type": "array"}]}`,
			[]string{`group "env": must be {"type": "array", "properties": [...]}`}},
		{"item not object", wrap(`"port"`), []string{`properties[0] (key "env").properties[0]: want an object, got string`}},
		{"item missing key", wrap(`{"type": "integer"}`), []string{`properties[0] (key "env").properties[0]: missing "key"`}},
		{"item missing type", wrap(`{"key": "port"}`), []string{`(key "port"): missing "type"; allowed: integer, number`}},
		{"item unknown type", wrap(`{"key": "port", "type": "int"}`), []string{`unknown type "int"; allowed: integer, number, boolean`}},
		{"item unknown field", wrap(`{"key": "port", "type": "integer", "defualt": 1}`), []string{`(key "port"): unknown field "defualt"; allowed: key, label`}},
		{"key with space", wrap(`{"key": "my port", "type": "integer", "default": 1}`), []string{`(key "my port"): key must not contain spaces`}},
		{"key with empty segment", wrap(`{"key": "a..b", "type": "integer", "default": 1}`), []string{"empty dot-separated parts"}},
		{"duplicate key", wrap(`{"key": "port", "type": "integer", "default": 1}, {"key": "port", "type": "integer", "default": 2}`),
			[]string{`key "port" appears twice`}},
		{"required bad", wrap(`{"key": "port", "type": "integer", "default": 1, "required": "maybe"}`), []string{`required: want "yes", "no", true or false`}},
		{"min above max", wrap(`{"key": "port", "type": "integer", "default": 1, "min": 10, "max": 5}`), []string{"parameter env.port: min 10 is greater than max 5"}},
		{"min on string", wrap(`{"key": "name", "type": "string", "default": "a", "min": 1}`), []string{"parameter env.name: min, max and step apply only to integer and number"}},
		{"step zero", wrap(`{"key": "size", "type": "integer", "default": 10, "step": 0}`), []string{"step: must be greater than 0"}},
		{"default wrong type", wrap(`{"key": "port", "type": "integer", "default": "abc"}`), []string{`parameter env.port: default: "abc" is not an integer`}},
		{"default fraction for integer", wrap(`{"key": "port", "type": "integer", "default": 1.5}`), []string{"parameter env.port: default: want an integer, got 1.5"}},
		{"boolean default wrong", wrap(`{"key": "on", "type": "boolean", "default": 1}`), []string{"parameter env.on: default: want a boolean, got number"}},
		{"range entry wrong type", wrap(`{"key": "port", "type": "integer", "default": 1, "range": [1, "two"]}`), []string{`parameter env.port: range[1]: "two" is not an integer`}},
		{"range not array", wrap(`{"key": "port", "type": "integer", "default": 1, "range": 1}`), []string{"range: want an array of allowed values"}},
		{"multichoice without range", wrap(`{"key": "x", "type": "string", "default": "a", "multichoice": true}`), []string{"multichoice needs a range"}},
		{"multichoice integer", wrap(`{"key": "x", "type": "integer", "default": 1, "range": [1], "multichoice": true}`), []string{"multichoice applies only to string items"}},
		{"limits shape", wrap(`{"key": "zk", "type": "service", "default": "", "limits": ["app-1"]}`), []string{`limits: want {"app-id"`}},
		{"nesting too deep", wrap(`{"key": "r", "type": "array", "properties": [{"key": "s", "type": "array", "properties": []}]}`),
			[]string{"env.r.s: items nest at most group.role.item deep"}},
		{"properties on non-array", wrap(`{"key": "r", "type": "string", "properties": []}`), []string{`env.r: an item with properties must have "type": "array"`}},
		{"role and key clash", wrap(`{"key": "r", "type": "string", "default": ""}, {"key": "r", "type": "array", "properties": []}`),
			[]string{`key "r" appears twice`}},
		{"reserved replica suffix", `{"type": "array", "properties": [{"key": "cluster", "type": "array", "properties": [{"key": "db-replica", "type": "array", "properties": []}]}]}`,
			[]string{`cluster.db-replica: role names ending in "-replica" are reserved`}},
		{"pattern does not compile", "{\"type\": \"array\", \"properties\": [{\"key\": \"env\", \"type\": \"array\", \"properties\": [\n  {\"key\": \"a\", \"type\": \"string\", \"default\": \"\"},\n  {\"key\": \"user\", \"type\": \"string\", \"default\": \"x\", \"pattern\": \"^[a-z\"}]}]}",
			[]string{"config.json: line 3: parameter env.user: pattern \"^[a-z\" does not compile", "missing closing ]"}},
		{"wrong type names the line", "{\"type\": \"array\", \"properties\": [{\"key\": \"env\", \"type\": \"array\", \"properties\": [\n  {\"key\": \"port\", \"type\": \"integer\",\n   \"min\": \"one\"}]}]}",
			[]string{"config.json: line 3: ", `(key "port"): min:`}},
		{"same path twice via dotted key", wrap(`{"key": "r.lag", "type": "integer", "default": 1}, {"key": "r", "type": "array", "properties": [{"key": "lag", "type": "integer", "default": 2}]}`),
			[]string{"parameter env.r.lag is declared twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w warnings
			_, err := parseConfig([]byte(tt.config), &w)
			wantErr(t, err, tt.parts...)
		})
	}
}

func TestConfigWarnings(t *testing.T) {
	cfg := `{"type": "array", "properties": [{"key": "env", "type": "array", "properties": [
	  {"key": "registry", "type": "string", "default": "", "pattern": "^$|^((?!dockerhub).)+$"},
	  {"key": "level", "type": "integer"},
	  {"key": "port", "type": "integer", "default": 70000, "max": 65535}
	]}]}`
	var w warnings
	c, err := parseConfig([]byte(cfg), &w)
	if err != nil {
		t.Fatal(err)
	}
	for _, parts := range [][]string{
		{"env.registry", "uses look-around or a back-reference", "it is not enforced"},
		{"env.level", "no default and not required", "renders as 0"},
		{"env.port", "the default does not pass its own checks", "above the maximum 65535"},
	} {
		if !hasWarning(w.list(), parts...) {
			t.Errorf("no warning with %q in %q", parts, w.list())
		}
	}
	if it, _ := c.Item("env.registry"); it.re != nil {
		t.Fatal("an invalid pattern must not be compiled")
	}
}

func TestConfigRequiredForms(t *testing.T) {
	cfg := `{"type": "array", "properties": [{"key": "env", "type": "array", "properties": [
	  {"key": "a", "type": "string", "default": "", "required": "yes"},
	  {"key": "b", "type": "string", "default": "", "required": true},
	  {"key": "c", "type": "string", "default": "", "required": "no"},
	  {"key": "d", "type": "string", "default": "", "required": false}
	]}]}`
	var w warnings
	c, err := parseConfig([]byte(cfg), &w)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"env.a": true, "env.b": true, "env.c": false, "env.d": false} {
		if it, _ := c.Item(key); it.Required != want {
			t.Errorf("%s required = %v, want %v", key, it.Required, want)
		}
	}
}

func TestJSONLines(t *testing.T) {
	data := []byte("{\n \"type\": \"array\",\n \"properties\": [\n  {\"key\": \"a\",\n   \"pattern\": \"[\"}, {\"key\": \"b\"}\n ]\n}\n")
	got := jsonLines(data)
	for path, want := range map[string]int{"": 1, "type": 2, "properties": 3, "properties[0]": 4, "properties[0].key": 4, "properties[0].pattern": 5, "properties[1]": 5, "properties[1].key": 5} {
		if got[path] != want {
			t.Errorf("line of %q = %d, want %d", path, got[path], want)
		}
	}
}
