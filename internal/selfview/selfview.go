// Package selfview maps a cluster's metadata tree (internal/metatree) to one
// node's /self view, the keys AppCenter templates read: /self/host is the
// node's own host entry, /self/env the cluster env overlaid with the node's
// role env, and every other key of the tree appears under /self as it is.
// The drone serves this view from etcd (drone/metaview) and `hangar app
// render` builds it from a synthetic tree; both call Sources, so they agree
// by construction. It depends on nothing, so the drone stays small.
package selfview

import (
	"sort"
	"strings"
)

// Root is the key prefix of the view.
const Root = "/self"

// Sources maps a cluster tree (keys relative to /clusters/<id>/) to node
// nodeID's view: it returns, for each view key, the tree key its value
// comes from (a caller reading sealed values opens them by their tree key).
func Sources(nodeID string, tree map[string]string) map[string]string {
	out := make(map[string]string, len(tree))
	hostPrefix, role := findHost(nodeID, tree)
	for k := range tree {
		switch {
		case strings.HasPrefix(k, "roles/"), strings.HasPrefix(k, "env/"):
			// Merged below: roles/ is only the source of role env.
		case strings.HasPrefix(k, "host/"):
			// /self/host is the node's own entry; never let a stray
			// cluster-level key shadow it.
		default:
			out[Root+"/"+k] = k
		}
	}
	if hostPrefix != "" {
		for k := range tree {
			if field, ok := strings.CutPrefix(k, hostPrefix); ok && field != "" {
				out[Root+"/host/"+field] = k
			}
		}
	}
	for k := range tree {
		if key, ok := strings.CutPrefix(k, "env/"); ok && key != "" {
			out[Root+"/env/"+key] = k
		}
	}
	if role != "" {
		roleEnv := "roles/" + role + "/env/"
		for k := range tree {
			if key, ok := strings.CutPrefix(k, roleEnv); ok && key != "" {
				out[Root+"/env/"+key] = k
			}
		}
	}
	return out
}

// Values is node nodeID's view of tree with the values in place: view key
// (under Root) to value.
func Values(nodeID string, tree map[string]string) map[string]string {
	src := Sources(nodeID, tree)
	out := make(map[string]string, len(src))
	for k, from := range src {
		out[k] = tree[from]
	}
	return out
}

// findHost returns the key prefix of the host entry whose node_id is nodeID
// ("hosts/<role>/<iid>/" or, role-less, "hosts/<iid>/") and the node's role:
// the directory it sits in, or for a role-less layout its role field if any.
func findHost(nodeID string, tree map[string]string) (prefix, role string) {
	var matches []string
	for k, val := range tree {
		if val != nodeID || !strings.HasPrefix(k, "hosts/") || !strings.HasSuffix(k, "/node_id") {
			continue
		}
		if n := strings.Count(k, "/"); n == 2 || n == 3 {
			matches = append(matches, k)
		}
	}
	if len(matches) == 0 {
		return "", ""
	}
	// Node ids are unique; if the tree says otherwise, at least be stable.
	sort.Strings(matches)
	k := matches[0]
	prefix = strings.TrimSuffix(k, "node_id")
	if parts := strings.Split(k, "/"); len(parts) == 4 {
		// The directory is where pilot placed the host, so it names the
		// roles/<role>/ entry written alongside it.
		return prefix, parts[1]
	}
	return prefix, tree[prefix+"role"]
}
