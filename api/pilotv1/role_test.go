package pilotv1

import (
	"strings"
	"testing"
)

func TestParseRole(t *testing.T) {
	for _, name := range []string{"viewer", "member", "admin"} {
		r, err := ParseRole(name)
		if err != nil || RoleName(r) != name {
			t.Errorf("ParseRole(%q) = %v, %v", name, r, err)
		}
	}
	if _, err := ParseRole("root"); err == nil || !strings.Contains(err.Error(), "admin, member or viewer") {
		t.Errorf("ParseRole(root): %v", err)
	}
}
