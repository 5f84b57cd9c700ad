package examples_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var redisHosts = []host{
	{role: "primary", iid: "i-p1", ip: "10.0.0.5", sid: 1},
	{role: "replica", iid: "i-r1", ip: "10.0.0.6", sid: 2},
}

var redisEnv = map[string]string{"port": "6379", "appendonly": "yes", "maxmemory-policy": "allkeys-lru", "maxmemory": "256"}

func TestRedisPackageFiles(t *testing.T) {
	var pkg map[string]any
	readJSON(t, "redis/package.json", &pkg)
	if pkg["name"] != "redis" || pkg["version"] == nil || pkg["app_version"] == nil {
		t.Fatalf("package.json = %v", pkg)
	}
	spec := renderCluster(t, "redis", map[string]any{"env.maxmemory-policy": "allkeys-lfu"})
	if got := get(t, spec, "env", "maxmemory-policy"); got != "allkeys-lfu" {
		t.Fatalf("env maxmemory-policy = %v: a dashed key must render", got)
	}
	if got := fmt.Sprint(get(t, spec, "endpoints", "redis", "port")); got != "6379" {
		t.Fatalf("endpoint port = %s", got)
	}
	primary, replica := node(t, spec, "primary"), node(t, spec, "replica")
	if fmt.Sprint(get(t, primary, "services", "start", "order")) >= fmt.Sprint(get(t, replica, "services", "start", "order")) {
		t.Fatal("replicas must start after the primary")
	}
}

func TestRedisTemplates(t *testing.T) {
	for _, self := range redisHosts {
		t.Run(self.role, func(t *testing.T) {
			root := t.TempDir()
			renderConfd(t, "redis", root, newMetadata(self, redisHosts, redisEnv), false)
			conf := readFile(t, filepath.Join(root, "opt/redis/redis.conf"))
			for _, want := range []string{"bind " + self.ip + "\n", "port 6379\n", "appendonly yes\n", "maxmemory 256mb\n", "maxmemory-policy allkeys-lru\n"} {
				if !strings.Contains(conf, want) {
					t.Errorf("redis.conf lacks %q:\n%s", want, conf)
				}
			}
			hasReplicaof := strings.Contains(conf, "\nreplicaof 10.0.0.5 6379\n")
			if want := self.role == "replica"; hasReplicaof != want {
				t.Errorf("replicaof line present = %v, want %v:\n%s", hasReplicaof, want, conf)
			}

			ctl := filepath.Join(root, "opt/redis/ctl.sh")
			fi, err := os.Stat(ctl)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o755 {
				t.Errorf("ctl.sh mode = %v, want 0755", fi.Mode().Perm())
			}
			script := readFile(t, ctl)
			for _, want := range []string{"HOST='" + self.ip + "'", "ROLE='" + self.role + "'", "PRIMARY_IP='10.0.0.5'", "MAXMEMORY='256mb'"} {
				if !strings.Contains(script, want) {
					t.Errorf("ctl.sh lacks %q", want)
				}
			}
			if out, err := exec.Command("/bin/sh", "-n", ctl).CombinedOutput(); err != nil {
				t.Fatalf("ctl.sh is not valid sh: %v\n%s", err, out)
			}
		})
	}
}

// TestRedisOnLocalLayout runs examples/redis with the redis-server of this
// machine, laid out as on the local runtime.
func TestRedisOnLocalLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Redis cluster")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli not installed")
	}
	ips := []string{"127.0.0.5", "127.0.0.6"}
	port := loopbackPort(t, ips...)
	c := &localCluster{
		t:      t,
		pkg:    "redis",
		spec:   renderCluster(t, "redis", map[string]any{"cluster.replica.count": 1, "env.port": port}),
		binDir: t.TempDir(),
		env:    map[string]string{"port": fmt.Sprint(port), "appendonly": "yes", "maxmemory-policy": "noeviction", "maxmemory": "256"},
	}
	base := t.TempDir()
	for i, role := range []string{"primary", "replica"} {
		h := host{role: role, iid: "i-" + role, ip: ips[i], sid: i + 1}
		c.nodes = append(c.nodes, instance{host: h, root: filepath.Join(base, h.iid, "root")})
	}
	ctl := `sh "$HANGAR_ROOT/opt/redis/ctl.sh" `
	t.Cleanup(func() {
		for _, n := range c.nodes {
			_ = c.exec(n, ctl+"stop")
		}
	})
	cli := func(n instance, args string) string {
		t.Helper()
		out, err := c.output(n, fmt.Sprintf("redis-cli -h %s -p %d %s", n.ip, port, args))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	primary, replica := c.nodes[0], c.nodes[1]

	c.render()
	for _, svc := range []string{"init", "start"} {
		if err := c.run(svc); err != nil {
			t.Fatal(err)
		}
	}
	if got := cli(primary, "set greeting hi"); got != "OK" {
		t.Fatalf("SET on primary: %q", got)
	}
	eventually(t, 15*time.Second, func() error {
		if got := cli(replica, "get greeting"); got != "hi" {
			return fmt.Errorf("GET on replica = %q", got)
		}
		return nil
	})
	if got := cli(replica, "set x y"); !strings.Contains(got, "READONLY") {
		t.Fatalf("SET on replica = %q, want a READONLY error", got)
	}

	for _, n := range c.nodes {
		if err := c.exec(n, get(t, c.spec, "health_check", "check_cmd").(string)); err != nil {
			t.Fatalf("health check on %s: %v", n.iid, err)
		}
		out, err := c.output(n, get(t, c.spec, "monitor", "cmd").(string))
		if err != nil || !strings.Contains(out, `"connected_clients":`) {
			t.Fatalf("monitor on %s: %q %v", n.iid, out, err)
		}
	}

	// update-env reaches the running servers through reload_cmd.
	c.env["maxmemory-policy"] = "allkeys-lru"
	c.env["maxmemory"] = "64"
	c.render()
	for _, n := range c.nodes {
		if got := cli(n, "config get maxmemory-policy"); !strings.HasSuffix(got, "allkeys-lru") {
			t.Fatalf("%s maxmemory-policy after update = %q", n.iid, got)
		}
		if got := cli(n, "config get maxmemory"); !strings.HasSuffix(got, fmt.Sprint(64<<20)) {
			t.Fatalf("%s maxmemory after update = %q, want 64 MiB", n.iid, got)
		}
	}

	if err := c.run("stop"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if err := c.exec(n, ctl+"check"); err == nil {
			t.Fatalf("%s still answers after stop", n.iid)
		}
	}
}
