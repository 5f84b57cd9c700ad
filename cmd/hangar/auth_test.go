package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangarhq/hangar/api/pilotv1"
)

// copyFile puts src at dst, creating dst's folder.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTokenAndCAResolution(t *testing.T) {
	p := startFake(t, newFakeState())
	other := deadPilot(t) // another pilot's CA and token
	for _, tc := range []struct {
		name  string
		args  []string
		files bool // put p's CA and token where `hangar up` leaves them
		env   map[string]string
		code  int
		want  []string
	}{
		{name: "flags", args: []string{"--ca", p.caFile, "--token", p.token}, want: []string{"No runtimes yet"}},
		{name: "environment", env: map[string]string{envCA: p.caFile, envToken: p.token}, want: []string{"No runtimes yet"}},
		{name: "files hangar up leaves", files: true, want: []string{"No runtimes yet"}},
		{name: "flag beats file", files: true, args: []string{"--token", other.token}, code: 1, want: []string{"missing or invalid API token", "--token", "HANGAR_TOKEN"}},
		{name: "no token", args: []string{"--ca", p.caFile}, code: 1, want: []string{"list runtimes", "missing or invalid API token", "HANGAR_TOKEN"}},
		{name: "wrong token", args: []string{"--ca", p.caFile, "--token", other.token}, code: 1, want: []string{"missing or invalid API token"}},
		{name: "no CA", args: []string{"--token", p.token}, code: 1, want: []string{"no CA certificate", "--ca", envCA, "ca.crt"}},
		{name: "another pilot's CA", args: []string{"--ca", other.caFile, "--token", p.token}, code: 1, want: []string{"could not be verified", "--ca"}},
		{name: "missing CA file", args: []string{"--ca", "/nonexistent/ca.crt", "--token", p.token}, code: 1, want: []string{"--ca /nonexistent/ca.crt"}},
		{name: "CA file without a certificate", args: []string{"--ca", filepath.Join(filepath.Dir(p.caFile), "..", "admin.token"), "--token", p.token}, code: 1, want: []string{"holds no PEM certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEnv(t)
			e.getenv = func(k string) string { return tc.env[k] }
			if tc.files {
				home, _ := e.userHomeDir()
				copyFile(t, p.caFile, caCertPath(filepath.Join(home, ".hangar")))
				copyFile(t, filepath.Join(filepath.Dir(p.caFile), "..", "admin.token"), adminTokenPath(filepath.Join(home, ".hangar")))
			}
			res := runCLIEnv(t, e, append(append([]string{"--pilot", p.addr}, tc.args...), "runtime", "list")...)
			if res.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", res.code, tc.code, res.stdout, res.stderr)
			}
			mustContain(t, "output", res.stdout+res.stderr, tc.want...)
			if strings.Contains(res.stdout+res.stderr, p.token) {
				t.Errorf("the token was printed:\n%s%s", res.stdout, res.stderr)
			}
		})
	}
}

func TestHelpNeverShowsTheToken(t *testing.T) {
	e := testEnv(t)
	e.getenv = func(k string) string {
		if k == envToken {
			return "hgt_secret-from-the-environment"
		}
		return ""
	}
	res := runCLIEnv(t, e, "--help")
	if res.code != 0 || strings.Contains(res.stdout, "hgt_secret") {
		t.Fatalf("exit %d; help:\n%s", res.code, res.stdout)
	}
	mustContain(t, "help", res.stdout, "--token", "--ca", "HANGAR_TOKEN", "HANGAR_CA")
}

func TestUserCommands(t *testing.T) {
	s := newFakeState()
	p := startFake(t, s)

	res := runCLI(t, p, "user", "create", "bob", "--role", "member", "--tenant", "acme")
	if res.code != 0 {
		t.Fatalf("user create: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "user create", res.stdout, "User bob created in tenant acme with role member", "hgt_new-users-token", "shown only once", "HANGAR_TOKEN")
	s.mu.Lock()
	if len(s.createUserReqs) != 1 || s.createUserReqs[0].GetRole() != pilotv1.Role_ROLE_MEMBER || s.createUserReqs[0].GetTenant() != "acme" {
		t.Errorf("requests %v", s.createUserReqs)
	}
	s.mu.Unlock()

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"user", "create", "bob"}, "--role is required"},
		{[]string{"user", "create", "bob", "--role", "root"}, `--role "root": use admin, member or viewer`},
		{[]string{"audit", "--limit", "0"}, "--limit 0: give 1 to 1000"},
		{[]string{"revoke", "pilot", "p-1"}, "revoke a frontgate or a drone"},
		{[]string{"user", "delete", "nobody"}, "user nobody: not found"},
	} {
		res := runCLI(t, p, tc.args...)
		if res.code != 1 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, res.code, res.stderr, tc.want)
		}
	}
	s.mu.Lock()
	if len(s.createUserReqs) != 1 {
		t.Errorf("refused command lines reached pilot: %v", s.createUserReqs)
	}
	s.mu.Unlock()

	res = runCLI(t, p, "user", "list")
	mustContain(t, "user list", res.stdout, "NAME", "admin", "alice", "viewer")
	res = runCLI(t, p, "user", "delete", "alice")
	mustContain(t, "user delete", res.stdout, "User alice deleted")
	res = runCLI(t, p, "whoami")
	mustContain(t, "whoami", res.stdout, "admin (tenant default, role admin)")
	res = runCLI(t, p, "audit", "--limit", "5")
	mustContain(t, "audit", res.stdout, "DeleteCluster", "PermissionDenied", "alice", "CreateCluster", "cl-1")
	if strings.Index(res.stdout, "DeleteCluster") > strings.Index(res.stdout, "CreateCluster") {
		t.Errorf("audit is not in pilot's order (newest first):\n%s", res.stdout)
	}
	res = runCLI(t, p, "revoke", "drone", "cln-1", "--reason", "stolen laptop")
	mustContain(t, "revoke", res.stdout, "drone cln-1 revoked")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.auditLimits) != 1 || s.auditLimits[0] != 5 {
		t.Errorf("audit limits sent: %v", s.auditLimits)
	}
	if len(s.revokeReqs) != 1 || s.revokeReqs[0].GetKind() != "drone" || s.revokeReqs[0].GetId() != "cln-1" || s.revokeReqs[0].GetReason() != "stolen laptop" {
		t.Errorf("revoke requests: %v", s.revokeReqs)
	}
}
