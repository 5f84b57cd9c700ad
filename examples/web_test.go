package examples_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangarhq/hangar/internal/apppkg"
)

var webHosts = []host{
	{role: "web", iid: "i-w1", ip: "10.0.0.11", sid: 1},
	{role: "web", iid: "i-w2", ip: "10.0.0.12", sid: 2},
	{role: "web", iid: "i-w3", ip: "10.0.0.13", sid: 3},
	{role: "lb", iid: "i-lb", ip: "10.0.0.20", sid: 4},
}

var webEnv = map[string]string{
	"web_port": "8080", "http_port": "8000", "tcp_port": "8001", "context_path": "/web",
	"balance": "roundrobin", "maxconn": "4096", "timeout_connect": "5s", "check_interval_ms": "2000",
}

func TestWebPackageFiles(t *testing.T) {
	var pkg map[string]any
	readJSON(t, "web/package.json", &pkg)
	if pkg["name"] != "web" || pkg["version"] != "1.0.0" || pkg["app_version"] != "1.0" {
		t.Fatalf("package.json = %v", pkg)
	}
	spec := renderCluster(t, "web", map[string]any{"cluster.web.count": 4})
	web, lb := node(t, spec, "web"), node(t, spec, "lb")
	if fmt.Sprint(get(t, web, "count")) != "4" || fmt.Sprint(get(t, lb, "count")) != "1" {
		t.Fatalf("counts: web %v lb %v", web["count"], lb["count"])
	}
	if get(t, web, "container", "image") != "hangar/web:1.0" || get(t, lb, "container", "image") != "hangar/haproxy:2.6" {
		t.Fatalf("images: web %v, lb %v", web["container"], lb["container"])
	}
	// The lb starts after the web nodes and stops before them, so it
	// never serves an empty backend at create or stop.
	order := func(n map[string]any, svc string) string { return fmt.Sprint(get(t, n, "services", svc, "order")) }
	if order(lb, "start") <= order(web, "start") || order(lb, "stop") >= order(web, "stop") {
		t.Fatalf("orders: start web %s lb %s, stop web %s lb %s", order(web, "start"), order(lb, "start"), order(web, "stop"), order(lb, "stop"))
	}
	for _, ep := range []string{"http", "tcp"} {
		if p := fmt.Sprint(get(t, spec, "endpoints", ep, "port")); p != map[string]string{"http": "8000", "tcp": "8001"}[ep] {
			t.Errorf("endpoint %s port = %s", ep, p)
		}
	}

	p, err := apppkg.LoadDir("web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Resolve(map[string]string{"cluster.web.count": "3", "env.context_path": "/shop/v1"}); err != nil {
		t.Fatal(err)
	}
	for key, val := range map[string]string{
		"env.context_path": "no-slash", "env.balance": "fastest", "env.web_port": "80",
		"cluster.web.count": "0", "env.timeout_connect": "5 s", "env.check_interval_ms": "10",
	} {
		if _, err := p.Resolve(map[string]string{key: val}); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%q: err = %v, want a refusal naming %s", key, val, err, key)
		}
	}
}

// lbConfig renders haproxy.cfg as the lb node would, with the nodes of
// deleting listed under /deleting-hosts.
func lbConfig(t *testing.T, env map[string]string, deleting ...host) (root, cfg string) {
	t.Helper()
	md := newMetadata(webHosts[3], webHosts, env)
	for _, h := range deleting {
		md["/self/deleting-hosts/"+h.role+"/"+h.iid+"/ip"] = h.ip
		md["/self/deleting-hosts/"+h.role+"/"+h.iid+"/node_id"] = "cln-" + h.iid
	}
	root = t.TempDir()
	renderConfd(t, "web", root, md, false)
	return root, readFile(t, filepath.Join(root, "opt/lb/haproxy.cfg"))
}

func TestWebTemplates(t *testing.T) {
	_, cfg := lbConfig(t, webEnv)
	for _, want := range []string{
		"bind 10.0.0.20:8000\n", "bind 10.0.0.20:8001\n", "timeout connect 5s\n", "maxconn 4096\n",
		"retries 3\n", "option redispatch 1\n", "default-server inter 2000 fall 2 rise 2\n",
		"acl in_context path_beg /web/\n", "http-request replace-path ^/web/?(.*)$ /\\1\n",
		"server cln-i-w1 10.0.0.11:8080 check\n", "server cln-i-w3 10.0.0.13:8080 check\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("haproxy.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if n := strings.Count(cfg, " check\n"); n != 6 {
		t.Errorf("%d servers with check, want 3 per backend:\n%s", n, cfg)
	}

	// A node leaving by scale-in is left out of both backends.
	root, cfg := lbConfig(t, webEnv, webHosts[2])
	if strings.Contains(cfg, "cln-i-w3") || strings.Count(cfg, " check\n") != 4 {
		t.Errorf("the leaving node is still served:\n%s", cfg)
	}

	// Context path / serves everything: no rewriting.
	env := map[string]string{}
	for k, v := range webEnv {
		env[k] = v
	}
	env["context_path"] = "/"
	if _, cfg := lbConfig(t, env); strings.Contains(cfg, "in_context") {
		t.Errorf("context path / still filters:\n%s", cfg)
	}

	// ctl.sh is valid sh, and haproxy -c takes the config and refuses a
	// bad timeout_connect (where HAProxy is installed).
	ctl := filepath.Join(root, "opt/lb/ctl.sh")
	if fi, err := os.Stat(ctl); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("ctl.sh: %v %v", fi, err)
	}
	if out, err := exec.Command("/bin/sh", "-n", ctl).CombinedOutput(); err != nil {
		t.Fatalf("ctl.sh is not valid sh: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("haproxy"); err == nil {
		if out, err := exec.Command(ctl, "check", filepath.Join(root, "opt/lb/haproxy.cfg")).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c refuses the rendered config: %v\n%s", err, out)
		}
		env["timeout_connect"] = "5parsecs"
		bad, _ := lbConfig(t, env)
		if out, err := exec.Command(ctl, "check", filepath.Join(bad, "opt/lb/haproxy.cfg")).CombinedOutput(); err == nil || !strings.Contains(string(out), "timeout connect") {
			t.Errorf("haproxy -c on timeout_connect 5parsecs: %v\n%s", err, out)
		}
	}

	// A web node renders its hangar-web config, and no HAProxy config.
	wroot := t.TempDir()
	renderConfd(t, "web", wroot, newMetadata(webHosts[1], webHosts, webEnv), false)
	if got := configLines(readFile(t, filepath.Join(wroot, "opt/web/web.conf"))); got["listen"] != "10.0.0.12:8080" || got["name"] != "cln-i-w2" {
		t.Errorf("web.conf = %v", got)
	}
	if cfg := readFile(t, filepath.Join(wroot, "opt/lb/haproxy.cfg")); strings.Contains(cfg, "backend") {
		t.Errorf("a web node renders a HAProxy config:\n%s", cfg)
	}
	if out, err := exec.Command(filepath.Join(wroot, "opt/lb/ctl.sh"), "check", "/nonexistent").CombinedOutput(); err != nil {
		t.Errorf("ctl.sh check on a web node: %v %s, want a no-op", err, out)
	}
}
