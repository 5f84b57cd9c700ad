package apppkg

import (
	"strings"
	"testing"
)

// An OpenPitrix cluster.json.tmpl as OpenPitrix writes it: its platform's
// ids and debug switch, change_subnet, a volume's instance_size. It loads,
// with a warning for each field that has no effect here.
func TestOpenPitrixClusterFields(t *testing.T) {
	files := kvFiles()
	delete(files, "cluster.json.mustache")
	tmpl := edit(t, kvGoTemplate, `"name": "{{.cluster.name}}",`,
		`"app_id": "app-x", "version_id": "appv-y", "global_uuid": "123", "debug": false, "advanced_actions": ["change_subnet", "scale_horizontal"], "name": "{{.cluster.name}}",`)
	tmpl = edit(t, tmpl, `"volume": {"size": "{{.cluster.master.volume_size}}"}`, `"volume": {"size": "{{.cluster.master.volume_size}}", "instance_size": 20}`)
	files["cluster.json.tmpl"] = tmpl
	p := mustLoad(t, files)
	for _, f := range []string{"app_id", "version_id", "global_uuid", "debug"} {
		if !hasWarning(p.Warnings, f+": filled by the OpenPitrix platform") {
			t.Errorf("no warning for %s in %q", f, p.Warnings)
		}
	}
	if !hasWarning(p.Warnings, "nodes[0].volume.instance_size", "not yet executed") {
		t.Errorf("no warning for instance_size in %q", p.Warnings)
	}
	if hasWarning(p.Warnings, "change_subnet") {
		t.Errorf("change_subnet warned: %q", p.Warnings)
	}

	files["cluster.json.tmpl"] = strings.Replace(tmpl, `"change_subnet"`, `"change_planet"`, 1)
	_, err := loadFiles(t, files)
	wantErr(t, err, "advanced_actions[0]", "change_planet")
}

// Services no operation of Hangar runs are accepted with a warning.
func TestServicesNeverRunWarn(t *testing.T) {
	files := kvFiles()
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"services": {`,
		`"services": {"get_nodes_order": {"cmd": "/opt/order.sh", "event": ["upgrade"]}, "delete_snapshot": {"cmd": "/opt/del.sh"},`)
	p := mustLoad(t, files)
	for _, w := range []string{"services.get_nodes_order: accepted, but never run", "services.delete_snapshot: accepted, but never run"} {
		if !hasWarning(p.Warnings, w) {
			t.Errorf("no warning %q in %q", w, p.Warnings)
		}
	}
}

// in-place-upgrade-nodes goes with an in-place upgrading_policy, and is
// honoured (Hangar upgrades every node in place); elsewhere it is refused.
func TestInPlaceUpgradeNodes(t *testing.T) {
	files := kvFiles()
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"advanced_actions": ["scale_horizontal"],`,
		`"advanced_actions": ["scale_horizontal"], "upgrading_policy": "in-place-parallel", "in-place-upgrade-nodes": [{"container": {"snapshot": "ss-1"}}],`)
	p := mustLoad(t, files)
	if hasWarning(p.Warnings, "in-place-upgrade-nodes") {
		t.Fatalf("warned: %q", p.Warnings)
	}
	files["cluster.json.mustache"] = strings.Replace(files["cluster.json.mustache"], `"upgrading_policy": "in-place-parallel", `, "", 1)
	_, err := loadFiles(t, files)
	wantErr(t, err, "in-place-upgrade-nodes: applies only with upgrading_policy in-place-parallel or in-place-sequential")
}

// Fields whose effect Hangar does not give are refused, naming them, rather
// than run without it: a cluster without its replicas, or templates
// reading other clusters' metadata.
func TestRefusedFields(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{`"advanced_actions": ["scale_horizontal"],`, `"advanced_actions": ["scale_horizontal"], "metadata_root_access": true,`, "metadata_root_access: true is not supported"},
		{`"role": "replica",`, `"role": "replica", "replica": 1,`, "nodes[1].replica: 1: replicas per primary (role replica-replica) are not supported yet"},
	} {
		files := kvFiles()
		files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], tc.old, tc.new)
		_, err := loadFiles(t, files)
		wantErr(t, err, tc.want)
	}
	// false and 0 ask for nothing.
	files := kvFiles()
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"role": "replica",`, `"role": "replica", "replica": 0,`)
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"advanced_actions": ["scale_horizontal"],`, `"advanced_actions": ["scale_horizontal"], "metadata_root_access": false,`)
	mustLoad(t, files)
}

// passphraseless takes ssh-rsa; ssh-dsa, which OpenSSH refuses, is refused
// naming it.
func TestPassphraselessValues(t *testing.T) {
	files := kvFiles()
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"role": "replica",`, `"role": "replica", "passphraseless": "ssh-dsa",`)
	_, err := loadFiles(t, files)
	wantErr(t, err, `nodes[1].passphraseless: "ssh-dsa": DSA keys are refused by OpenSSH; use "ssh-rsa"`)
	files["cluster.json.mustache"] = strings.Replace(files["cluster.json.mustache"], `"ssh-dsa"`, `"ssh-rsa"`, 1)
	if p := mustLoad(t, files); hasWarning(p.Warnings, "passphraseless") {
		t.Fatalf("ssh-rsa warned: %q", p.Warnings)
	}
}

// A node's eip_class and extra_quota ask QingCloud for resources no
// runtime of Hangar's has: platform hints, with a warning. with_replica
// asks for replicas, which are refused.
func TestNodePlatformHintsAndWithReplica(t *testing.T) {
	files := kvFiles()
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"role": "replica",`, `"role": "replica", "eip_class": 1, "extra_quota": {"eip": 1},`)
	p := mustLoad(t, files)
	for _, w := range []string{"nodes[1].eip_class: QingCloud platform hint", "nodes[1].extra_quota: QingCloud platform hint"} {
		if !hasWarning(p.Warnings, w) {
			t.Errorf("no warning %q in %q", w, p.Warnings)
		}
	}
	files = kvFiles()
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"services": {`, `"services": {"backup": {"cmd": "b", "with_replica": true},`)
	_, err := loadFiles(t, files)
	wantErr(t, err, "services.backup.with_replica: true is not supported")
}
