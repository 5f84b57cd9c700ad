package secretbox

import (
	"errors"
	"fmt"
	"sort"
)

// ParamAD is the associated data of a cluster parameter: the value opens
// only as that parameter of that cluster.
func ParamAD(clusterID, path string) string { return clusterID + "/" + path }

// CredentialAD is the associated data of a runtime credential. Runtime ids
// are unique only within a tenant, so the tenant is part of it: a
// credential copied to another tenant's runtime of the same name does not
// open there.
func CredentialAD(tenant, runtimeID, key string) string {
	return tenant + "/" + runtimeID + "/" + key
}

// SealParams returns a copy of a cluster's parameters (path -> value) with
// the values of the paths secret reports sealed, for storing. Values already
// sealed are kept as they are, so stored parameters can be merged with new
// ones and sealed again. A nil box (sealing disabled) or a nil secret
// returns an unchanged copy.
func SealParams(box *Box, clusterID string, params map[string]string, secret func(path string) bool) map[string]string {
	out := make(map[string]string, len(params))
	for k, v := range params {
		if box != nil && secret != nil && secret(k) && !IsSealed(v) {
			v = box.Seal(v, ParamAD(clusterID, k))
		}
		out[k] = v
	}
	return out
}

// OpenParams returns a copy of stored parameters with the sealed values
// opened. When secret is not nil only its paths are opened (a sealed-looking
// value of another parameter is the user's text); when nil, every sealed
// value is. A secret value stored in clear, from before sealing was enabled,
// is returned as it is. Every value that fails to open is reported, by path.
func OpenParams(box *Box, clusterID string, params map[string]string, secret func(path string) bool) (map[string]string, error) {
	return openAll(box, params, func(k string) bool { return secret == nil || secret(k) },
		func(k string) string { return ParamAD(clusterID, k) },
		func(k string) string { return fmt.Sprintf("parameter %s of cluster %s", k, clusterID) })
}

// SealCredentials returns a copy of the provider credentials of a tenant's
// runtime with every value sealed (values already sealed are kept). A nil
// box returns an unchanged copy.
func SealCredentials(box *Box, tenant, runtimeID string, creds map[string]string) map[string]string {
	out := make(map[string]string, len(creds))
	for k, v := range creds {
		if box != nil && !IsSealed(v) {
			v = box.Seal(v, CredentialAD(tenant, runtimeID, k))
		}
		out[k] = v
	}
	return out
}

// OpenCredentials returns a copy of stored credentials with every sealed
// value opened; each failure is reported by key.
func OpenCredentials(box *Box, tenant, runtimeID string, creds map[string]string) (map[string]string, error) {
	return openAll(box, creds, func(string) bool { return true },
		func(k string) string { return CredentialAD(tenant, runtimeID, k) },
		func(k string) string { return fmt.Sprintf("credential %s of runtime %s", k, runtimeID) })
}

// openAll returns a copy of m with every sealed value whose key secret
// accepts opened under ad(key); each failure is reported, named by what(key).
func openAll(box *Box, m map[string]string, secret func(string) bool, ad, what func(string) string) (map[string]string, error) {
	out := make(map[string]string, len(m))
	var errs []error
	for _, k := range sortedKeys(m) {
		v := m[k]
		if IsSealed(v) && secret(k) {
			if box == nil {
				errs = append(errs, fmt.Errorf("%s is encrypted, but no secret key is configured; start pilot with the key it was sealed with (--secret-key-file or %s)", what(k), EnvKey))
				continue
			}
			plain, err := box.Open(v, ad(k))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", what(k), err))
				continue
			}
			v = plain
		}
		out[k] = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
