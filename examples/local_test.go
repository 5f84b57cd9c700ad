package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// instance is one node laid out like the local runtime's: its own loopback
// address and a directory whose root/ is the node's filesystem root.
type instance struct {
	host
	root string
}

// env is the environment the drone runs commands in.
func (in instance) env(binDir string) []string {
	return append(os.Environ(),
		"HANGAR_ROOT="+in.root,
		"HANGAR_INSTANCE_ID="+in.iid,
		"HANGAR_ADDRESS="+in.ip,
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
}

// localCluster drives an app package the way pilot and the drones do on
// the local runtime, with the binaries the package calls built into binDir.
type localCluster struct {
	t      *testing.T
	pkg    string
	spec   map[string]any
	binDir string
	nodes  []instance
	env    map[string]string
}

func (c *localCluster) metadata(self instance) metadata {
	hosts := make([]host, len(c.nodes))
	for i, n := range c.nodes {
		hosts[i] = n.host
	}
	return newMetadata(self.host, hosts, c.env)
}

// render runs confd for every node, reload commands included. confd runs
// reload_cmd in this process's environment, so it is set per node (and PATH
// once, by the test).
func (c *localCluster) render() {
	c.t.Helper()
	for _, n := range c.nodes {
		c.t.Setenv("HANGAR_ROOT", n.root)
		c.t.Setenv("HANGAR_INSTANCE_ID", n.iid)
		c.t.Setenv("HANGAR_ADDRESS", n.ip)
		renderConfd(c.t, c.pkg, n.root, c.metadata(n), true)
	}
}

// service returns the command of a role's service, with its order.
func (c *localCluster) service(role, svc string) (cmd string, order int, ok bool) {
	s, ok := node(c.t, c.spec, role)["services"].(map[string]any)[svc].(map[string]any)
	if !ok {
		return "", 0, false
	}
	if o, isNum := s["order"].(json.Number); isNum {
		n, _ := o.Int64()
		order = int(n)
	}
	cmd, _ = s["cmd"].(string)
	return cmd, order, cmd != ""
}

// run executes a service on every node, grouped by ascending order.
func (c *localCluster) run(svc string) error {
	c.t.Helper()
	type step struct {
		order int
		node  instance
		cmd   string
	}
	var steps []step
	for _, n := range c.nodes {
		if cmd, order, ok := c.service(n.role, svc); ok {
			steps = append(steps, step{order, n, cmd})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].order < steps[j].order })
	for _, s := range steps {
		if err := c.exec(s.node, s.cmd); err != nil {
			return fmt.Errorf("%s on %s: %w", svc, s.node.iid, err)
		}
	}
	return nil
}

// exec runs one command on a node, as the drone does: /bin/sh -c.
func (c *localCluster) exec(n instance, cmd string) error {
	_, err := c.output(n, cmd)
	return err
}

func (c *localCluster) output(n instance, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	x := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	x.Env = n.env(c.binDir)
	x.Dir = "/"
	var stdout, stderr strings.Builder
	x.Stdout, x.Stderr = &stdout, &stderr
	if err := x.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%q: %w\nstdout: %s\nstderr: %s", cmd, err, &stdout, &stderr)
	}
	return stdout.String(), nil
}

// buildTools builds the named commands of this module into a fresh dir.
func buildTools(t *testing.T, cmds ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	dir := t.TempDir()
	for _, c := range cmds {
		b := exec.Command(goBin, "build", "-o", filepath.Join(dir, filepath.Base(c)), "github.com/hangarhq/hangar/"+c)
		b.Dir = ".."
		if out, err := b.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", c, err, out)
		}
	}
	return dir
}

// loopbackPort returns a port free on every ip, skipping the test where
// extra loopback addresses cannot be bound (macOS without aliases).
func loopbackPort(t *testing.T, ips ...string) int {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Skipf("cannot bind %s: %v", ips[0], err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{ln}
		free := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				free = false
				break
			}
			lns = append(lns, l)
		}
		for _, l := range lns {
			l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on all loopback addresses")
	return 0
}

func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpDo(c *http.Client, method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestKVOnLocalLayout deploys examples/kv as the local runtime does (one
// loopback address and root directory per node, confd rendering under the
// root, services run with /bin/sh -c by order) and uses the cluster.
func TestKVOnLocalLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hangar-kv and runs a cluster")
	}
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := loopbackPort(t, ips...)
	binDir := buildTools(t, "cmd/hangar-kv")
	t.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))

	c := &localCluster{
		t:      t,
		pkg:    "kv",
		spec:   renderCluster(t, "kv", map[string]any{"cluster.replica.count": 2, "env.port": port}),
		binDir: binDir,
		env:    map[string]string{"port": fmt.Sprint(port), "motd": "hello from hangar"},
	}
	base := t.TempDir()
	for _, h := range []host{
		{role: "primary", iid: "i-prim", ip: ips[0], sid: 1},
		{role: "replica", iid: "i-rep1", ip: ips[1], sid: 2},
		{role: "replica", iid: "i-rep2", ip: ips[2], sid: 3},
	} {
		c.nodes = append(c.nodes, instance{host: h, root: filepath.Join(base, h.iid, "root")})
	}
	t.Cleanup(func() {
		// Leave no server behind even when the test failed half way.
		for _, n := range c.nodes {
			_ = c.exec(n, `hangar-kv stop --wait 2s --pidfile "$HANGAR_ROOT/var/run/kv.pid"`)
		}
	})

	// Create: confd renders, then init, then start by order.
	c.render()
	if err := c.run("init"); err != nil {
		t.Fatal(err)
	}
	if err := c.run("start"); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	primary := fmt.Sprintf("http://%s:%d", ips[0], port)
	if code, body, err := httpDo(hc, http.MethodPut, primary+"/kv/greeting", "hi"); err != nil || code != http.StatusOK {
		t.Fatalf("PUT on primary: %d %s %v", code, body, err)
	}
	for _, ip := range ips[1:] {
		replica := fmt.Sprintf("http://%s:%d", ip, port)
		eventually(t, 10*time.Second, func() error {
			code, body, err := httpDo(hc, http.MethodGet, replica+"/kv/greeting", "")
			if err != nil || code != http.StatusOK || body != "hi" {
				return fmt.Errorf("GET on replica %s: %d %q %v", ip, code, body, err)
			}
			return nil
		})
		if code, body, _ := httpDo(hc, http.MethodPut, replica+"/kv/x", "y"); code != http.StatusForbidden || !strings.Contains(body, ips[0]) {
			t.Fatalf("PUT on replica: %d %q, want 403 naming the primary", code, body)
		}
	}

	// The health check and monitor commands of the spec work on every node.
	check := get(t, c.spec, "health_check", "check_cmd").(string)
	monitor := get(t, c.spec, "monitor", "cmd").(string)
	for _, n := range c.nodes {
		if err := c.exec(n, check); err != nil {
			t.Fatalf("health check on %s: %v", n.iid, err)
		}
		out, err := c.output(n, monitor)
		if err != nil {
			t.Fatal(err)
		}
		var items map[string]int
		if err := json.Unmarshal([]byte(out), &items); err != nil || items["keys"] != 1 {
			t.Fatalf("monitor on %s printed %q (%v), want keys 1", n.iid, out, err)
		}
	}

	// update-env: the new motd re-renders the config and reload_cmd
	// reaches the running servers.
	c.env["motd"] = "changed by hangar"
	c.render()
	for _, n := range c.nodes {
		url := fmt.Sprintf("http://%s:%d/status", n.ip, port)
		eventually(t, 10*time.Second, func() error {
			code, body, err := httpDo(hc, http.MethodGet, url, "")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("status of %s: %d %v", n.iid, code, err)
			}
			var st struct{ MOTD string }
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				return err
			}
			if st.MOTD != "changed by hangar" {
				return fmt.Errorf("%s motd = %q", n.iid, st.MOTD)
			}
			return nil
		})
		rl := readFile(t, filepath.Join(n.root, "var/run/reload.log"))
		if !strings.Contains(rl, " reloaded (not running)\n") || !strings.HasSuffix(rl, " reloaded\n") {
			t.Fatalf("%s reload.log = %q: want the pre-start render and the live reload", n.iid, rl)
		}
	}

	// Stop by order: every server is gone.
	if err := c.run("stop"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if _, err := os.Stat(filepath.Join(n.root, "var/run/kv.pid")); !os.IsNotExist(err) {
			t.Fatalf("%s pidfile after stop: %v", n.iid, err)
		}
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", n.ip, port), time.Second); err == nil {
			conn.Close()
			t.Fatalf("%s still listening after stop", n.iid)
		}
	}
}
