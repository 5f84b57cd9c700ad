package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/kelseyhightower/memkv"
	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/metatree"
	"github.com/hangarhq/hangar/internal/selfview"
)

// The ids and addresses `app render` gives its synthetic cluster: addresses
// from the ranges RFC 5737 reserves for documentation, so a rendered file
// never points at a real machine.
const (
	renderClusterID = "cl-render"
	renderNetworkID = "net-render"
)

type appRenderOptions struct {
	load   apppkg.LoadOptions
	params []string
	counts []string
	role   string
	node   string
}

func newAppRenderCmd(c *cli) *cobra.Command {
	var opts appRenderOptions
	cmd := &cobra.Command{
		Use:   "render DIR",
		Short: "Print the cluster spec and a node's config files, without deploying",
		Long: `Render an app package (a folder or a .tar.gz) as a create with these
parameters would, without pilot and without deploying anything:

 1. the cluster spec: cluster.json rendered with --param values over the
    defaults, printed as JSON;
 2. each confd config file (confd/conf.d/*.toml, in name order) as one node
    would render it from the metadata it would get: the first node of --role
    (default: the first role), or the node --node names.

The metadata is the tree pilot would publish (hosts, cluster, env, role env,
endpoints) for a synthetic cluster: its nodes take sids from 1 in the order
of cluster.json's roles, instance ids i-<sid>, node ids cln-<sid> and
addresses from 192.0.2.0/24, the range set aside for documentation. The node
reads it through the same /self view the drone serves (/self/host is its own
entry, /self/env the cluster env with its role's env over it), and templates
run with the drone's functions, so a file renders here as on the node. Links
to other clusters are left empty.

The package is checked as 'hangar app lint' checks it first. A template that
fails names its file and line.`,
		Example: `  # What the default cluster would look like
  hangar app render ./myapp

  # A replica's files, with a parameter changed and five replicas
  hangar app render ./cache --param env.greeting=hi --role replica --count replica=5

  # The third node (sid 3), as JSON
  hangar app render ./myapp --node 3 -o json | jq -r '.files[0].content'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.appRender(args[0], opts)
		},
	}
	cmd.Flags().StringArrayVarP(&opts.params, "param", "p", nil, "a parameter `KEY=VALUE` (repeatable), as for 'hangar cluster create'")
	cmd.Flags().StringArrayVar(&opts.counts, "count", nil, "a role's node count, `ROLE=N` (repeatable; the same as --param cluster.ROLE.count=N)")
	cmd.Flags().StringVar(&opts.role, "role", "", "render as the first node of `ROLE` (default: the first role)")
	cmd.Flags().StringVar(&opts.node, "node", "", "render as this `NODE`: its sid (1, 2, ...) or instance id (i-1)")
	addPackageNameFlags(cmd, &opts.load)
	return cmd
}

// renderedFile is one confd file as a node renders it.
type renderedFile struct {
	Resource string `json:"resource"` // confd/conf.d/x.toml
	Template string `json:"template"` // confd/templates/x.tmpl
	Dest     string `json:"dest"`
	Content  string `json:"content"`
}

// renderNode is the node the files are rendered for.
type renderNode struct {
	Role       string `json:"role"`
	SID        int    `json:"sid"`
	InstanceID string `json:"instance_id"`
	NodeID     string `json:"node_id"`
	IP         string `json:"ip"`
}

type renderResult struct {
	Spec     json.RawMessage `json:"spec"`
	Node     renderNode      `json:"node"`
	Files    []renderedFile  `json:"files"`
	Warnings []string        `json:"warnings,omitempty"`
}

func (c *cli) appRender(dir string, opts appRenderOptions) error {
	params, err := parseKeyValues("--param", "env.port=8080", opts.params)
	if err != nil {
		return err
	}
	counts, err := parseKeyValues("--count", "replica=3", opts.counts)
	if err != nil {
		return err
	}
	checked, err := checkPackage(dir, opts.load)
	if err != nil {
		return fmt.Errorf("render %s: %w", dir, err)
	}
	res, err := renderPackage(checked.pkg, params, counts, opts.role, opts.node)
	if err != nil {
		return fmt.Errorf("render %s: %w", dir, err)
	}
	if c.format == formatJSON {
		return writeJSONValue(c.stdout, res)
	}
	writeRender(c.stdout, checked.pkg, res)
	return nil
}

// renderPackage renders pkg's spec with params (and counts, ROLE=N) and
// every confd file as the node chosen by role or node would.
func renderPackage(pkg *apppkg.Package, params, counts map[string]string, role, node string) (*renderResult, error) {
	for r, n := range counts {
		k := apppkg.CountPath(r)
		if _, ok := params[k]; ok {
			return nil, fmt.Errorf("--count %s=%s: %s is also given with --param; give one", r, n, k)
		}
		if params == nil {
			params = map[string]string{}
		}
		params[k] = n
	}
	vals, err := pkg.Resolve(params)
	if err != nil {
		return nil, fmt.Errorf("parameters: %w", err)
	}
	spec, err := pkg.Render(vals)
	if err != nil {
		return nil, err
	}
	stored, err := spec.Stored()
	if err != nil {
		return nil, err
	}
	var st struct {
		Rendered json.RawMessage `json:"rendered"`
	}
	if err := json.Unmarshal(stored, &st); err != nil {
		return nil, fmt.Errorf("rendered spec: %w", err)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, st.Rendered, "", "  "); err != nil {
		return nil, fmt.Errorf("rendered spec: %w", err)
	}

	hosts, err := renderHosts(spec)
	if err != nil {
		return nil, err
	}
	self, err := pickHost(spec, hosts, role, node)
	if err != nil {
		return nil, err
	}
	info := metatree.Cluster{ClusterID: renderClusterID, AppID: pkg.Meta.Name, AppVersion: pkg.Meta.Version,
		VXNet: renderNetworkID, GlobalUUID: renderClusterID}
	tree := metatree.Build(info, spec, hosts, metatree.Options{})
	view := selfview.Values(self.NodeID, tree)

	res := &renderResult{
		Spec:     indented.Bytes(),
		Node:     renderNode{Role: self.Role, SID: self.SID, InstanceID: self.InstanceID, NodeID: self.NodeID, IP: self.IP},
		Warnings: spec.Warnings,
	}
	var names []string
	for n := range pkg.Confd {
		if strings.HasPrefix(n, "conf.d/") && strings.HasSuffix(n, ".toml") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		f, err := renderResource(pkg, n, view)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Files = append(res.Files, f)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return res, nil
}

// renderHosts gives every node of spec a synthetic host: sids from 1 in the
// order of the spec's roles, sizes from its role, as pilot would.
func renderHosts(spec *apppkg.ClusterSpec) ([]metatree.Host, error) {
	var hosts []metatree.Host
	sid := 0
	for _, n := range spec.Nodes {
		for i := 0; i < n.Count; i++ {
			sid++
			ip, err := documentationIP(sid)
			if err != nil {
				return nil, err
			}
			h := metatree.Host{
				NodeID: "cln-" + strconv.Itoa(sid), InstanceID: "i-" + strconv.Itoa(sid), Role: n.Role, IP: ip,
				SID: sid, GID: sid, GSID: strconv.Itoa(100000000 + sid),
				CPU: n.CPU, Memory: n.Memory, GPU: n.GPU, GPUClass: n.GPUClass, InstanceClass: n.InstanceClass,
			}
			if n.Volume != nil {
				h.VolumeSize = n.Volume.Size
			}
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, errors.New("cluster.<role>.count: the cluster would have no nodes; give a role a count above 0 (--count ROLE=N)")
	}
	return hosts, nil
}

// documentationIP is the address of the node with sid n: 192.0.2.n, then
// 198.51.100.x and 203.0.113.x (RFC 5737).
func documentationIP(n int) (string, error) {
	for _, net := range []string{"192.0.2.", "198.51.100.", "203.0.113."} {
		if n <= 254 {
			return net + strconv.Itoa(n), nil
		}
		n -= 254
	}
	return "", fmt.Errorf("the cluster would have more than %d nodes, more than render gives addresses to", 3*254)
}

// pickHost returns the node named by node (a sid or an instance id), else
// the first node of role, else the first node.
func pickHost(spec *apppkg.ClusterSpec, hosts []metatree.Host, role, node string) (metatree.Host, error) {
	if role != "" {
		if _, ok := spec.Node(role); !ok {
			return metatree.Host{}, fmt.Errorf("--role %q: the app has no such role (it has %s)", role, quotedRoles(spec))
		}
	}
	if node != "" {
		for _, h := range hosts {
			if strconv.Itoa(h.SID) != node && h.InstanceID != node {
				continue
			}
			if role != "" && h.Role != role {
				return metatree.Host{}, fmt.Errorf("--node %s is a node of role %q, not %q", node, h.Role, role)
			}
			return h, nil
		}
		return metatree.Host{}, fmt.Errorf("--node %q: no such node; the cluster has sids 1 to %d (instance ids i-1 to i-%d)", node, len(hosts), len(hosts))
	}
	for _, h := range hosts {
		if role == "" || h.Role == role {
			return h, nil
		}
	}
	return metatree.Host{}, fmt.Errorf("--role %s: the role has no nodes with these parameters; give it some with --count %s=N", role, role)
}

func quotedRoles(spec *apppkg.ClusterSpec) string {
	var rs []string
	for _, r := range spec.Roles() {
		rs = append(rs, strconv.Quote(r))
	}
	return strings.Join(rs, ", ")
}

// renderResource renders one conf.d resource of pkg as the drone does: the
// template reads the view's entries under its keys, with /self taken off.
func renderResource(pkg *apppkg.Package, name string, view map[string]string) (renderedFile, error) {
	res, err := apppkg.ParseConfdResource("confd/"+name, pkg.Confd[name])
	if err != nil {
		return renderedFile{}, err
	}
	tmplName := "confd/templates/" + res.Src
	text, ok := pkg.Confd["templates/"+res.Src]
	if !ok {
		return renderedFile{}, fmt.Errorf("confd/%s: src %q: %s does not exist", name, res.Src, tmplName)
	}
	store := memkv.New()
	for k, v := range view {
		for _, key := range res.Keys {
			if strings.HasPrefix(k, path.Join(selfview.Root, key)) {
				store.Set(path.Join("/", strings.TrimPrefix(k, selfview.Root)), v)
				break
			}
		}
	}
	t, err := template.New(tmplName).Funcs(renderFuncs(&store)).Parse(string(text))
	if err != nil {
		return renderedFile{}, err
	}
	out := &limitedWriter{left: limits.MaxRenderedFileBytes}
	if err := t.Execute(out, nil); err != nil {
		if out.left < 0 {
			return renderedFile{}, fmt.Errorf("%s: the output is larger than the %d bytes a rendered file may have", tmplName, limits.MaxRenderedFileBytes)
		}
		return renderedFile{}, err
	}
	return renderedFile{Resource: "confd/" + name, Template: tmplName, Dest: res.Dest, Content: out.String()}, nil
}

// limitedWriter keeps what it is given and fails once more than left bytes
// came, as the drone bounds a rendered file.
type limitedWriter struct {
	bytes.Buffer
	left int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		w.left = -1
		return 0, errors.New("rendered file too large")
	}
	w.left -= len(p)
	return w.Buffer.Write(p)
}

func writeRender(w io.Writer, pkg *apppkg.Package, res *renderResult) {
	tmpl := "cluster.json.mustache"
	if pkg.TemplateKind == apppkg.KindGoTemplate {
		tmpl = "cluster.json.tmpl"
	}
	fmt.Fprintf(w, "# Cluster spec (%s, rendered)\n%s\n", tmpl, res.Spec)
	n := res.Node
	who := fmt.Sprintf("node %s (sid %d, %s", n.InstanceID, n.SID, n.IP)
	if n.Role != "" {
		who += ", role " + n.Role
	}
	who += ")"
	if len(res.Files) == 0 {
		fmt.Fprintf(w, "\n# No confd files: the package has no confd/conf.d/*.toml.\n")
	}
	for _, f := range res.Files {
		fmt.Fprintf(w, "\n# %s -> %s, as %s renders it (%s)\n%s", f.Template, f.Dest, who, f.Resource, f.Content)
		if f.Content != "" && !strings.HasSuffix(f.Content, "\n") {
			fmt.Fprintln(w)
		}
	}
	if len(res.Warnings) > 0 {
		fmt.Fprintf(w, "\n# Warnings (%d):\n", len(res.Warnings))
		for _, warn := range res.Warnings {
			fmt.Fprintf(w, "#   - %s\n", warn)
		}
	}
}
