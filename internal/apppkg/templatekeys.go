package apppkg

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
)

// The metadata tree a drone's templates read (/self, docs/appcenter-format.md
// §3). internal/metatree builds it; its tests hold it to these lists.
var (
	// MetadataHostFields are the fields of a host entry.
	MetadataHostFields = []string{"ip", "eip", "mac", "sid", "gid", "gsid", "node_id", "instance_id", "cpu", "gpu",
		"memory", "volume_size", "instance_class", "gpu_class", "volume_class", "physical_machine", "role",
		"pub_key", "token", "reserved_ips"}
	// MetadataClusterFields are the entries under /cluster.
	MetadataClusterFields = []string{"app_id", "app_version", "cluster_id", "user_id", "global_uuid", "cluster_tag",
		"vxnet", "zone", "endpoints", "api_server", "resource_limits", "upgrade-audit"}
	// MetadataTop are the top-level entries of the /self view.
	MetadataTop = []string{"host", "hosts", "cluster", "env", "links", "adding-hosts", "deleting-hosts",
		"vertical-scaling-roles", "upgrade-audit", "cmd"}
)

// keyFuncs are the template functions whose first argument is a metadata
// key or pattern.
var keyFuncs = map[string]bool{"get": true, "gets": true, "getv": true, "getvs": true, "ls": true, "lsdir": true, "exists": true}

// checkTemplateKeys warns, naming the template and line, about each literal
// key a confd template reads that the metadata tree of this package can
// never hold: an unknown top-level entry, host or cluster field, or an env
// key no parameter or env entry of the spec gives. Such a getv fails on
// every node, or an exists is always false.
func (p *Package) checkTemplateKeys(spec *ClusterSpec, w *warnings) {
	env := map[string]bool{}
	for k := range spec.Env {
		env[k] = true
	}
	for _, n := range spec.Nodes {
		for k := range n.Env {
			env[k] = true
		}
	}
	names := make([]string, 0, len(p.Confd))
	for n := range p.Confd {
		if strings.HasPrefix(n, "templates/") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		text := string(p.Confd[n])
		t, err := template.New(n).Funcs(confdFuncs()).Parse(text)
		if err != nil {
			continue // checkConfd reports it
		}
		for _, tr := range t.Templates() {
			if tr.Tree == nil {
				continue
			}
			walkKeys(tr.Root, func(fn, key string, pos parse.Pos) {
				if why := impossibleKey(key, env); why != "" {
					line, _ := lineCol([]byte(text), int64(pos))
					w.add("confd/%s: line %d: %s %q: %s, so it can never be in the metadata", n, line, fn, key, why)
				}
			})
		}
	}
}

// impossibleKey says why key can never be in a node's /self view, or "".
func impossibleKey(key string, env map[string]bool) string {
	if !strings.HasPrefix(key, "/") {
		return "" // relative keys and template variables are not checked
	}
	parts := strings.Split(strings.Trim(path.Clean(key), "/"), "/")
	if len(parts) == 0 || parts[0] == "" || hasMeta(parts[0]) {
		return ""
	}
	if !contains(MetadataTop, parts[0]) {
		return fmt.Sprintf("/%s is not an entry of the metadata (it has: %s)", parts[0], strings.Join(MetadataTop, ", "))
	}
	if len(parts) < 2 || hasMeta(parts[1]) {
		return ""
	}
	switch parts[0] {
	case "host":
		if !contains(MetadataHostFields, parts[1]) {
			return fmt.Sprintf("a host has no field %q (it has: %s)", parts[1], strings.Join(MetadataHostFields, ", "))
		}
	case "cluster":
		if !contains(MetadataClusterFields, parts[1]) {
			return fmt.Sprintf("/cluster has no entry %q (it has: %s)", parts[1], strings.Join(MetadataClusterFields, ", "))
		}
	case "env":
		// Env keys may hold '/'-free dots; a key with more segments is an
		// accesskey's sub-entry (<key>/access_key_id).
		if !env[parts[1]] {
			return fmt.Sprintf("no env entry %q: neither config.json's env parameters nor cluster.json's env give it", parts[1])
		}
	}
	return ""
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// walkKeys calls f for every call of a key function with a literal string
// first argument in the tree under n.
func walkKeys(n parse.Node, f func(fn, key string, pos parse.Pos)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkKeys(c, f)
		}
	case *parse.ActionNode:
		walkKeys(n.Pipe, f)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkKeys(c, f)
		}
	case *parse.CommandNode:
		if len(n.Args) >= 2 {
			if id, ok := n.Args[0].(*parse.IdentifierNode); ok && keyFuncs[id.Ident] {
				if s, ok := n.Args[1].(*parse.StringNode); ok {
					f(id.Ident, s.Text, s.Pos)
				}
			}
		}
		for _, a := range n.Args {
			walkKeys(a, f)
		}
	case *parse.IfNode:
		walkBranch(&n.BranchNode, f)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, f)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, f)
	case *parse.TemplateNode:
		walkKeys(n.Pipe, f)
	}
}

func walkBranch(b *parse.BranchNode, f func(fn, key string, pos parse.Pos)) {
	walkKeys(b.Pipe, f)
	walkKeys(b.List, f)
	walkKeys(b.ElseList, f)
}
