package pilotv1

import "fmt"

// RoleName is the role as users write it: "viewer", "member", "admin"
// ("none" for an unset role). Pilot's messages and the CLI both use it, so
// a role reads the same everywhere.
func RoleName(r Role) string {
	switch r {
	case Role_ROLE_VIEWER:
		return "viewer"
	case Role_ROLE_MEMBER:
		return "member"
	case Role_ROLE_ADMIN:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role name as RoleName writes it.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{Role_ROLE_VIEWER, Role_ROLE_MEMBER, Role_ROLE_ADMIN} {
		if s == RoleName(r) {
			return r, nil
		}
	}
	return Role_ROLE_UNSPECIFIED, fmt.Errorf("role %q: use admin, member or viewer", s)
}
