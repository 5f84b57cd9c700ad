package supervise

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An unprivileged drone (the local runtime's) cannot switch users, and says
// so rather than failing in the kernel's words.
func TestUnprivilegedDroneCannotSwitchUser(t *testing.T) {
	const self = 1879048200
	_, _, err := credentialFor("root", self)
	if err == nil || !strings.Contains(err.Error(), `run as user "root"`) || !strings.Contains(err.Error(), "cannot switch users") ||
		!strings.Contains(err.Error(), "1879048200") {
		t.Fatalf("switch to root from an unprivileged uid: %v", err)
	}
	cred, u, err := credentialFor("0", 0)
	if err != nil || cred != nil || u.Uid != "0" {
		t.Fatalf("root asking for root: %v %v %v, want no switch", cred, u, err)
	}
}

// Command prefers hangar-supervise beside the program, and falls back to
// the program itself with Arg.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "drone")
	if got := Command(self); len(got) != 2 || got[0] != self || got[1] != Arg {
		t.Fatalf("without %s: %v", Binary, got)
	}
	small := filepath.Join(dir, Binary)
	if err := os.WriteFile(small, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Command(self); got[0] != self {
		t.Fatalf("a %s that cannot be run was chosen: %v", Binary, got)
	}
	if err := os.Chmod(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Command(self); len(got) != 1 || got[0] != small {
		t.Fatalf("with %s beside it: %v", Binary, got)
	}
}
