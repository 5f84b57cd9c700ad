package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// requireTools skips the test when one of the commands an example package
// runs is not installed, unless the environment variable require is 1 (CI
// sets it after installing them): then it fails.
func requireTools(t *testing.T, require string, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			if os.Getenv(require) == "1" {
				t.Fatalf("%s is not installed, and %s=1 requires it", c, require)
			}
			t.Skipf("%s is not installed (set %s=1 to fail instead)", c, require)
		}
	}
}

// droneRecords returns the records of a node's commands that end with
// suffix, oldest first.
func droneRecords(t *testing.T, p *pilot, n *pilotv1.Node, suffix string) []droneRecord {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(p.instanceDir(n.InstanceId), "data", "commands", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []droneRecord
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r droneRecord
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if strings.HasSuffix(r.Cmd, suffix) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b droneRecord) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// onlyRecord is a node's one command ending with suffix, which must have
// exited 0.
func onlyRecord(t *testing.T, p *pilot, n *pilotv1.Node, suffix string) droneRecord {
	t.Helper()
	rs := droneRecords(t, p, n, suffix)
	if len(rs) != 1 || rs[0].State != "EXITED" || rs[0].ExitCode != 0 || rs[0].FinishedAt.IsZero() {
		t.Fatalf("node %s (%s) ran %q %d times: %+v; want once, successfully", n.Id, n.Role, suffix, len(rs), rs)
	}
	return rs[0]
}

// freePortNumber is a port number free on the loopback network.
func freePortNumber(t *testing.T) string {
	t.Helper()
	_, port, err := net.SplitHostPort(freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// showsNode says whether `hangar cluster show -o json` mentions any of the
// node's id, instance or address.
func showsNode(t *testing.T, p *pilot, clusterID string, n *pilotv1.Node) bool {
	t.Helper()
	show := p.mustHangar("cluster", "show", clusterID, "-o", "json")
	return strings.Contains(show, `"`+n.Id+`"`) || strings.Contains(show, `"`+n.InstanceId+`"`) || strings.Contains(show, `"`+n.Address+`"`)
}

const (
	mariaAdminPassword = "admin-secret-1"
	mariaReplPassword  = "repl-secret-2"
)

// mariaSQL runs statements on a node over TCP as the package's admin user.
func mariaSQL(n *pilotv1.Node, port, stmts string) (string, error) {
	cmd := exec.Command("mariadb", "--no-defaults", "-h", n.Address, "-P", port, "-uadmin",
		"--connect-timeout=5", "--batch", "--skip-column-names", "-e", stmts)
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+mariaAdminPassword)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s on %s: %v: %s", stmts, n.Address, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// asInstance runs a shell command on a node as the drone would: as the
// instance's user (the owner of its directory), with its HANGAR_ROOT.
func asInstance(t *testing.T, p *pilot, n *pilotv1.Node, cmd string) (string, error) {
	t.Helper()
	argv := []string{"/bin/sh", "-c", cmd}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(p.instanceDir(n.InstanceId))
		if err != nil {
			t.Fatal(err)
		}
		uid := fi.Sys().(*syscall.Stat_t).Uid
		argv = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups"}, argv...)
	}
	x := exec.Command(argv[0], argv[1:]...)
	x.Dir = p.instanceRoot(n.InstanceId)
	x.Env = append(os.Environ(), "HANGAR_ROOT="+p.instanceRoot(n.InstanceId))
	out, err := x.CombinedOutput()
	return string(out), err
}

// waitForRow polls a replica until it has the test row.
func waitForRow(t *testing.T, n *pilotv1.Node, port, want string) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("replica %s (%s) to have the row", n.Id, n.Address), func() (bool, string) {
		got, err := mariaSQL(n, port, "SELECT v FROM hangar_test.t WHERE id = 1")
		if err != nil {
			return false, err.Error()
		}
		return got == want, fmt.Sprintf("got %q", got)
	})
}

// TestMariaDBCluster deploys examples/mariadb through pilot on the local
// runtime: the primary starts before the replicas (from the drones' own
// command records), a row written on the primary reaches every replica by
// GTID replication, a replica added by scale-out catches up, a new
// replication password is applied live, a scale-in leaves the last replica
// replicating, and deleting the cluster stops every server.
func TestMariaDBCluster(t *testing.T) {
	requireTools(t, "HANGAR_REQUIRE_MARIADB", "mariadb", "mariadb-admin", "mariadb-install-db")
	if _, err := os.Stat("/usr/sbin/mariadbd"); err != nil {
		if _, perr := exec.LookPath("mariadbd"); perr != nil {
			requireTools(t, "HANGAR_REQUIRE_MARIADB", "mariadbd")
		}
	}
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/mariadb")
	port := freePortNumber(t)
	began := time.Now()
	lap := func(what string) {
		t.Logf("%s: %v", what, time.Since(began).Round(time.Millisecond))
		began = time.Now()
	}
	c, job := createCluster(t, p, "mariadb", map[string]string{
		"cluster.replica.count":    "2",
		"env.port":                 port,
		"env.admin_password":       mariaAdminPassword,
		"env.replication_password": mariaReplPassword,
	})
	mustSucceed(t, job)
	lap("create with two replicas")
	primaries, replicas := byRole(c, "primary"), byRole(c, "replica")
	if len(primaries) != 1 || len(replicas) != 2 {
		t.Fatalf("nodes %v, want one primary and two replicas", c.Nodes)
	}
	primary := primaries[0]

	// The order of create, from the drones' records: init everywhere,
	// then the primary's start, then the replicas'.
	const start, init = `ctl.sh" start`, `ctl.sh" init`
	primaryStart := onlyRecord(t, p, primary, start)
	var replicaStarts []droneRecord
	for _, n := range replicas {
		if in := onlyRecord(t, p, n, init); in.FinishedAt.After(primaryStart.StartedAt) {
			t.Errorf("replica %s's init ended at %v, after the primary's start began at %v", n.Id, in.FinishedAt, primaryStart.StartedAt)
		}
		r := onlyRecord(t, p, n, start)
		if r.StartedAt.Before(primaryStart.FinishedAt) {
			t.Errorf("replica %s began its start at %v, before the primary's ended at %v", n.Id, r.StartedAt, primaryStart.FinishedAt)
		}
		replicaStarts = append(replicaStarts, r)
	}
	// The replica role is "serial": one replica's start ends before the
	// next one's begins.
	slices.SortFunc(replicaStarts, func(a, b droneRecord) int { return a.StartedAt.Compare(b.StartedAt) })
	for i := 1; i < len(replicaStarts); i++ {
		if prev, next := replicaStarts[i-1], replicaStarts[i]; next.StartedAt.Before(prev.FinishedAt) {
			t.Errorf("replica starts overlapped: %s–%s and %s–%s; the role is serial",
				prev.StartedAt.Format(time.StampMilli), prev.FinishedAt.Format(time.StampMilli),
				next.StartedAt.Format(time.StampMilli), next.FinishedAt.Format(time.StampMilli))
		}
	}

	// The endpoint names every node's address and the port.
	show := p.mustHangar("cluster", "show", c.Id, "-o", "json")
	if !strings.Contains(show, `"mysql"`) || !strings.Contains(show, port) || !strings.Contains(show, primary.Address) {
		t.Fatalf("cluster show lacks the mysql endpoint on port %s:\n%s", port, show)
	}

	// Each server has its node's sid as server_id and listens on its own
	// address.
	for _, n := range c.Nodes {
		got, err := mariaSQL(n, port, "SELECT @@server_id, @@gtid_strict_mode, @@log_bin, @@binlog_format, @@read_only")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%d\t1\t1\tROW\t%d", n.Sid, map[bool]int{true: 1}[n.Role == "replica"])
		if got != want {
			t.Errorf("node %s (%s): server_id, gtid_strict_mode, log_bin, binlog_format, read_only = %q, want %q", n.Id, n.Role, got, want)
		}
	}

	// A row written on the primary is read on every replica.
	if _, err := mariaSQL(primary, port, "CREATE DATABASE hangar_test; CREATE TABLE hangar_test.t (id INT PRIMARY KEY, v VARCHAR(64)); INSERT INTO hangar_test.t VALUES (1, 'written before the scale-out')"); err != nil {
		t.Fatal(err)
	}
	for _, n := range replicas {
		waitForRow(t, n, port, "written before the scale-out")
	}

	// Scale-out: the new replica starts after the others and catches up.
	began = time.Now()
	out := p.mustHangar("cluster", "scale", c.Id, "--role", "replica", "--count", "3", "--wait")
	lap("scale-out to three replicas")
	after := p.cluster(c.Id)
	var added *pilotv1.Node
	for _, n := range byRole(after, "replica") {
		if !slices.ContainsFunc(replicas, func(o *pilotv1.Node) bool { return o.Id == n.Id }) {
			added = n
		}
	}
	if added == nil || len(byRole(after, "replica")) != 3 || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the scale-out: %v, nodes %v\n%s", after.Status, after.Nodes, out)
	}
	onlyRecord(t, p, added, init)
	onlyRecord(t, p, added, start)
	waitForRow(t, added, port, "written before the scale-out")
	for _, n := range c.Nodes {
		if rs := droneRecords(t, p, n, start); len(rs) != 1 {
			t.Errorf("node %s ran start %d times by the scale-out; want it left alone", n.Id, len(rs))
		}
	}

	// The health check and monitor commands of the spec work on every
	// node (Hangar does not run them yet).
	for _, n := range after.Nodes {
		if out, err := asInstance(t, p, n, `sh "$HANGAR_ROOT/opt/mariadb/ctl.sh" check`); err != nil {
			t.Errorf("health check on %s: %v\n%s", n.Id, err, out)
		}
		out, err := asInstance(t, p, n, `sh "$HANGAR_ROOT/opt/mariadb/ctl.sh" monitor`)
		var items map[string]int64
		jerr := json.Unmarshal([]byte(out), &items)
		// A replica added a moment ago may say 0 s.
		if uptime, ok := items["uptime"]; err != nil || jerr != nil || !ok || uptime < 0 {
			t.Errorf("monitor on %s printed %q (%v), want a JSON object with uptime", n.Id, out, err)
		}
		if _, lag := items["seconds_behind_master"]; lag != (n.Role == "replica") {
			t.Errorf("monitor on %s (%s) printed %q", n.Id, n.Role, out)
		}
	}

	// A new replication password reaches the running servers through
	// confd's reload_cmd: the primary changes the user, the replicas
	// reconnect with it and still replicate.
	began = time.Now()
	p.mustHangar("cluster", "update-env", c.Id, "replication_password=repl-secret-3", "--wait")
	lap("update-env")
	if _, err := mariaSQL(primary, port, "UPDATE hangar_test.t SET v = 'written after the password change' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	for _, n := range byRole(after, "replica") {
		waitForRow(t, n, port, "written after the password change")
		// CHANGE MASTER wrote it to master.info, and both replication
		// threads run again.
		info := filepath.Join(p.instanceRoot(n.InstanceId), "var", "lib", "mysql", "master.info")
		waitFor(t, 60*time.Second, fmt.Sprintf("replica %s to connect with the new password", n.Id), func() (bool, string) {
			b, _ := os.ReadFile(info)
			if !strings.Contains(string(b), "\nrepl-secret-3\n") {
				return false, info + " lacks the new password"
			}
			got, err := mariaSQL(n, port, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'system user'")
			return err == nil && got == "2", fmt.Sprintf("replication threads: %q %v", got, err)
		})
	}

	// Scale-in to one replica: the others stop and go, the last one still
	// replicates.
	began = time.Now()
	p.mustHangar("cluster", "scale", c.Id, "--role", "replica", "--count", "1", "--wait")
	lap("scale-in to one replica")
	final := p.cluster(c.Id)
	staying := byRole(final, "replica")
	if len(staying) != 1 || final.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the scale-in: %v, nodes %v", final.Status, final.Nodes)
	}
	for _, n := range byRole(after, "replica") {
		if n.Id == staying[0].Id {
			continue
		}
		if pids := processesOf(n.InstanceId); len(pids) > 0 {
			t.Errorf("removed replica %s still runs %v", n.Id, pids)
		}
		if _, err := os.Stat(p.instanceDir(n.InstanceId)); err == nil {
			t.Errorf("removed replica %s's directory is left", n.Id)
		}
		if showsNode(t, p, c.Id, n) {
			t.Errorf("hangar cluster show still names removed replica %s", n.Id)
		}
	}
	if _, err := mariaSQL(primary, port, "UPDATE hangar_test.t SET v = 'written after the scale-in' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	waitForRow(t, staying[0], port, "written after the scale-in")

	// Delete: every server stops (stop by order) and its instance goes.
	began = time.Now()
	p.mustHangar("cluster", "delete", c.Id, "--wait")
	lap("delete")
	for _, n := range after.Nodes {
		if pids := processesOf(n.InstanceId); len(pids) > 0 {
			t.Errorf("node %s still runs %v after the delete", n.Id, pids)
		}
		if _, err := os.Stat(p.instanceDir(n.InstanceId)); err == nil {
			t.Errorf("node %s's directory is left after the delete", n.Id)
		}
	}
}
