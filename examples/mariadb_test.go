package examples_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var mariaHosts = []host{
	{role: "primary", iid: "i-p1", ip: "10.0.0.5", sid: 1},
	{role: "replica", iid: "i-r1", ip: "10.0.0.6", sid: 2},
	{role: "replica", iid: "i-r2", ip: "10.0.0.7", sid: 3},
}

var mariaEnv = map[string]string{
	"port":                    "3306",
	"admin_password":          "admin-pw-1",
	"replication_password":    "repl-pw-2",
	"innodb_buffer_pool_size": "64",
	"max_connections":         "100",
}

func TestMariaDBPackageFiles(t *testing.T) {
	var pkg map[string]any
	readJSON(t, "mariadb/package.json", &pkg)
	if pkg["name"] != "mariadb" || pkg["version"] == nil || pkg["app_version"] == nil {
		t.Fatalf("package.json = %v", pkg)
	}
	cfg := readConfig(t, "mariadb")
	if c := find(t, cfg.Properties, "cluster", "primary", "count"); fmt.Sprint(c.Range) != "[1]" || c.Changeable == nil || *c.Changeable {
		t.Errorf("cluster.primary.count: range %v, changeable %v; want exactly one, fixed", c.Range, c.Changeable)
	}
	if c := find(t, cfg.Properties, "cluster", "replica", "count"); len(c.Range) == 0 || fmt.Sprint(c.Range[0]) != "1" {
		t.Errorf("cluster.replica.count range %v, want it to start at 1", c.Range)
	}
	for _, key := range []string{"admin_password", "replication_password"} {
		it := find(t, cfg.Properties, "env", key)
		re, err := regexp.Compile(it.Pattern)
		if it.Type != "password" || err != nil {
			t.Fatalf("env.%s: type %s, pattern %q (%v)", key, it.Type, it.Pattern, err)
		}
		// The scripts put passwords between single quotes in SQL and sh.
		for _, bad := range []string{"", "short", "it's-a-password", `back\slash-pw`, "with space 123"} {
			if re.MatchString(bad) {
				t.Errorf("env.%s pattern accepts %q", key, bad)
			}
		}
	}

	spec := renderCluster(t, "mariadb", map[string]any{"env.admin_password": "a-password", "env.replication_password": "r-password"})
	if got := fmt.Sprint(get(t, spec, "endpoints", "mysql", "port")); got != "3306" {
		t.Fatalf("endpoint mysql port = %s", got)
	}
	primary, replica := node(t, spec, "primary"), node(t, spec, "replica")
	order := func(n map[string]any, svc string) string { return fmt.Sprint(get(t, n, "services", svc, "order")) }
	if order(primary, "start") >= order(replica, "start") {
		t.Error("replicas must start after the primary")
	}
	if order(replica, "stop") >= order(primary, "stop") {
		t.Error("replicas must stop before the primary")
	}
	if replica["serial"] != true {
		t.Error(`the replica role must ask for "serial": true (one replica at a time)`)
	}
	for _, n := range []map[string]any{primary, replica} {
		for _, svc := range []string{"init", "start", "stop"} {
			if cmd := fmt.Sprint(get(t, n, "services", svc, "cmd")); !strings.Contains(cmd, `ctl.sh" `+svc) {
				t.Errorf("%s %s cmd = %q", n["role"], svc, cmd)
			}
		}
	}
}

func TestMariaDBTemplates(t *testing.T) {
	for _, self := range mariaHosts[:2] {
		t.Run(self.role, func(t *testing.T) {
			root := t.TempDir()
			renderConfd(t, "mariadb", root, newMetadata(self, mariaHosts, mariaEnv), false)
			conf := configLines(readFile(t, filepath.Join(root, "opt/mariadb/my.cnf")))
			for k, want := range map[string]string{
				"bind_address": self.ip, "port": "3306", "server_id": fmt.Sprint(self.sid), "report_host": self.ip,
				"log_bin": "binlog", "binlog_format": "ROW", "gtid_strict_mode": "ON", "skip_slave_start": "ON",
				"innodb_buffer_pool_size": "64M", "max_connections": "100",
			} {
				if conf[k] != want {
					t.Errorf("my.cnf %s = %q, want %q", k, conf[k], want)
				}
			}
			if got, want := conf["read_only"], map[bool]string{true: "ON"}[self.role == "replica"]; got != want {
				t.Errorf("my.cnf read_only = %q, want %q", got, want)
			}

			ctl := filepath.Join(root, "opt/mariadb/ctl.sh")
			fi, err := os.Stat(ctl)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("ctl.sh mode = %v, want 0700: it holds the passwords", fi.Mode().Perm())
			}
			script := readFile(t, ctl)
			for _, want := range []string{
				"HOST='" + self.ip + "'", "ROLE='" + self.role + "'", "PORT='3306'", "PRIMARY_IP='10.0.0.5'",
				"MASTER_HOST = '10.0.0.5'", "MASTER_PORT = 3306", "MASTER_USE_GTID = slave_pos", "MASTER_PASSWORD = 'repl-pw-2'",
				"IDENTIFIED BY 'admin-pw-1'", "IDENTIFIED BY 'repl-pw-2'",
			} {
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
