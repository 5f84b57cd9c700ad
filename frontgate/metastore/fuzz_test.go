package metastore

import (
	"errors"
	"path"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzMetastoreKeys checks the validation that keeps each cluster's
// metadata in its own subtree: the frontgate grants drones read access by
// prefix, so a key that escaped its cluster's prefix (or landed under
// another cluster's) would expose or overwrite that cluster's data.
// Refusals wrap ErrInvalid and name the field.
func FuzzMetastoreKeys(f *testing.F) {
	f.Add("c-1", "hosts/master/i-1/ip", "c-10")
	f.Add("c-1", "../c-2/env/password", "c-2")
	f.Add("c-1", "a//b", "c-1/a")
	f.Add("", "/abs", "")
	f.Add("C_1", "./x", "c")
	f.Add("c-1", "a/./b/..", "c-1")
	f.Add("c\x00", "é/\x00/..\\x", "c-1")
	f.Fuzz(func(t *testing.T, clusterID, key, other string) {
		idErr := ValidateClusterID(clusterID)
		if idErr != nil {
			checkInvalid(t, idErr, "cluster_id")
		} else {
			for _, r := range clusterID {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
					t.Fatalf("accepted cluster_id %q", clusterID)
				}
			}
		}
		keyErr := ValidateKey(key)
		if keyErr != nil {
			checkInvalid(t, keyErr, "key")
			return
		}
		if key == "" || strings.HasPrefix(key, "/") {
			t.Fatalf("accepted key %q", key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted key %q with segment %q", key, seg)
			}
		}
		if !utf8.ValidString(key) || strings.IndexFunc(key, unicode.IsControl) >= 0 {
			t.Fatalf("accepted key %q with a control character or invalid UTF-8", key)
		}
		if idErr != nil {
			return
		}
		full := Prefix(clusterID) + key
		// Whatever resolves paths on the way (etcd does not, confd's
		// path.Join does) must still land in this cluster's tree.
		if !strings.HasPrefix(path.Clean(full), Prefix(clusterID)) {
			t.Fatalf("key %q of cluster %q leaves its tree: %q", key, clusterID, path.Clean(full))
		}
		if other != clusterID && ValidateClusterID(other) == nil && strings.HasPrefix(full, Prefix(other)) {
			t.Fatalf("key %q of cluster %q lands in cluster %q's tree", key, clusterID, other)
		}
	})
}

func checkInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v does not wrap ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Fatalf("error %q does not name %s", err, field)
	}
}
