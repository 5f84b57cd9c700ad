package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// initNameRe is what pilot's catalog accepts as an app name.
var initNameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// initRoleRe keeps role names usable as config.json keys, metadata path
// segments and shell words.
var initRoleRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

type appInitOptions struct {
	name  string
	roles []string
	force bool
}

func newAppInitCmd(c *cli) *cobra.Command {
	var opts appInitOptions
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Write a small app package to start from",
		Long: `Write a small, working app package in DIR: the files an AppCenter package
has, each commented where the format allows, for you to edit.

  package.json                 the app's name and version
  config.json                  the parameters a cluster is created with: a
                               count, cpu and memory per role, and two env
                               settings (port, greeting)
  cluster.json.mustache        the cluster spec, rendered from the parameters:
                               one node entry per role with init, start and
                               stop services
  confd/conf.d/NAME.toml       where each node's config file goes and what
  confd/templates/NAME.conf.tmpl   it holds, rendered from the metadata
  README.md                    what to do next

The package passes 'hangar app lint' without warnings and deploys as it is
on the local runtime; its start service checks that the config file was
rendered. DIR is created when missing and must be empty unless --force is
given (then the files above are overwritten, and nothing else is touched).

The app is named after DIR unless --name is given; names are lowercase
letters, digits and dashes.`,
		Example: `  # A one-role app named after its folder
  hangar app init ./myapp

  # Two roles, then see what each node would get
  hangar app init ./cache --roles primary,replica
  hangar app render ./cache --role replica`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.appInit(args[0], opts)
		},
	}
	cmd.Flags().StringVar(&opts.name, "name", "", "the app's `name` (default: DIR's name)")
	cmd.Flags().StringSliceVar(&opts.roles, "roles", []string{"server"}, "the app's `roles`, comma-separated")
	cmd.Flags().BoolVar(&opts.force, "force", false, "write into a non-empty DIR, overwriting the package's files")
	return cmd
}

func (c *cli) appInit(dir string, opts appInitOptions) error {
	name := opts.name
	if name == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("init %s: %w", dir, err)
		}
		name = strings.ToLower(filepath.Base(abs))
		if !initNameRe.MatchString(name) {
			return fmt.Errorf("init %s: the folder's name %q is not an app name (lowercase letters, digits and dashes, starting with a letter); give one with --name", dir, filepath.Base(abs))
		}
	} else if !initNameRe.MatchString(name) {
		return fmt.Errorf("--name %q: use lowercase letters, digits and dashes, starting with a letter (at most 63)", name)
	}
	if len(opts.roles) == 0 {
		return errors.New("--roles: give at least one role")
	}
	seen := map[string]bool{}
	for _, r := range opts.roles {
		if !initRoleRe.MatchString(r) {
			return fmt.Errorf("--roles: role %q: use lowercase letters, digits, '-' and '_', starting with a letter (at most 32)", r)
		}
		if seen[r] {
			return fmt.Errorf("--roles: role %q is given twice", r)
		}
		seen[r] = true
	}

	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("init %s: %w", dir, err)
	case len(entries) > 0 && !opts.force:
		return fmt.Errorf("init %s: the folder is not empty (it has %s); choose another, or give --force to overwrite the package's files in it", dir, entries[0].Name())
	}

	files := initPackage(name, opts.roles)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("init %s: %w", dir, err)
		}
		if err := os.WriteFile(p, []byte(files[n]), 0o644); err != nil {
			return fmt.Errorf("init %s: %w", dir, err)
		}
	}
	if c.format == formatJSON {
		return writeJSONValue(c.stdout, map[string]any{"name": name, "version": "0.1.0", "roles": opts.roles, "dir": dir, "files": names})
	}
	fmt.Fprintf(c.stdout, "Wrote app %s 0.1.0 (roles %s) in %s:\n", name, strings.Join(opts.roles, ", "), dir)
	for _, n := range names {
		fmt.Fprintf(c.stdout, "  %s\n", n)
	}
	fmt.Fprintf(c.stdout, "\nNext: see what a node would get with `hangar app render %s`, then `hangar app push %s`.\n", dir, dir)
	return nil
}

// initPackage returns the files of a new package, by slash path.
func initPackage(name string, roles []string) map[string]string {
	var cfgRoles, nodes []string
	for i, r := range roles {
		cfgRoles = append(cfgRoles, strings.NewReplacer("@ROLE@", r).Replace(initRoleConfig))
		nodes = append(nodes, strings.NewReplacer("@ROLE@", r, "@ORDER@", fmt.Sprint(i+1), "@NAME@", name).Replace(initNode))
	}
	rep := strings.NewReplacer(
		"@NAME@", name,
		"@ROLES@", strings.Join(roles, ", "),
		"@FIRST@", roles[0],
		"@CONFIG_ROLES@", strings.Join(cfgRoles, ",\n"),
		"@NODES@", strings.Join(nodes, ",\n"),
	)
	return map[string]string{
		"package.json":                           rep.Replace(initPackageJSON),
		"config.json":                            rep.Replace(initConfig),
		"cluster.json.mustache":                  rep.Replace(initCluster),
		"confd/conf.d/" + name + ".toml":         rep.Replace(initToml),
		"confd/templates/" + name + ".conf.tmpl": rep.Replace(initTemplate),
		"README.md":                              rep.Replace(initReadme),
	}
}

const initPackageJSON = `{
  "name": "@NAME@",
  "version": "0.1.0",
  "app_version": "0.1.0",
  "description": "@NAME@, made with hangar app init"
}
`

const initConfig = `{
  "type": "array",
  "properties": [
    {
      "key": "cluster",
      "description": "the cluster and its roles",
      "type": "array",
      "properties": [
        {
          "key": "name",
          "label": "Name",
          "description": "name of the cluster",
          "type": "string",
          "default": "@NAME@",
          "required": "no"
        },
        {
          "key": "description",
          "label": "Description",
          "description": "what the cluster is for",
          "type": "string",
          "default": "",
          "required": "no"
        },
@CONFIG_ROLES@
      ]
    },
    {
      "key": "env",
      "description": "settings every node's config file is rendered from",
      "type": "array",
      "properties": [
        {
          "key": "port",
          "label": "Port",
          "description": "port every node listens on",
          "type": "integer",
          "default": 8080,
          "min": 1024,
          "max": 65535,
          "required": "yes",
          "changeable": false
        },
        {
          "key": "greeting",
          "label": "Greeting",
          "description": "a line written into every node's config; changing it renders the file again",
          "type": "string",
          "default": "hello",
          "pattern": "^[^\\r\\n]*$",
          "required": "no",
          "changeable": true
        }
      ]
    }
  ]
}
`

const initRoleConfig = `        {
          "key": "@ROLE@",
          "label": "@ROLE@",
          "description": "the @ROLE@ nodes",
          "type": "array",
          "properties": [
            {
              "key": "count",
              "label": "Count",
              "description": "number of @ROLE@ nodes",
              "type": "integer",
              "default": 1,
              "min": 1,
              "max": 9,
              "required": "yes"
            },
            {
              "key": "cpu",
              "label": "CPU",
              "description": "CPU cores of each @ROLE@ node",
              "type": "integer",
              "default": 1,
              "range": [1, 2, 4],
              "required": "yes"
            },
            {
              "key": "memory",
              "label": "Memory",
              "description": "memory of each @ROLE@ node, in MiB",
              "type": "integer",
              "default": 256,
              "range": [256, 512, 1024],
              "required": "yes"
            }
          ]
        }`

const initCluster = `{
  "name": {{cluster.name}},
  "description": {{cluster.description}},
  "nodes": [
@NODES@
  ],
  "env": {
    "port": {{env.port}},
    "greeting": {{env.greeting}}
  },
  "endpoints": {
    "@NAME@": {
      "port": {{env.port}},
      "protocol": "tcp"
    }
  }
}
`

// initNode is one role's node entry. Commands name files by their absolute
// path, as on a machine of the app's own; the local runtime maps the paths
// into the instance's root.
const initNode = `    {
      "role": "@ROLE@",
      "container": {
        "type": "docker",
        "image": "hangar/@NAME@:0.1.0"
      },
      "count": {{cluster.@ROLE@.count}},
      "cpu": {{cluster.@ROLE@.cpu}},
      "memory": {{cluster.@ROLE@.memory}},
      "services": {
        "init": {
          "cmd": "mkdir -p \"$HANGAR_ROOT/var/lib/@NAME@\"",
          "timeout": 30
        },
        "start": {
          "cmd": "test -s /etc/@NAME@/@NAME@.conf",
          "order": @ORDER@,
          "timeout": 60
        },
        "stop": {
          "cmd": "true",
          "timeout": 30
        }
      }
    }`

const initToml = `# Where confd writes the node's config file and what it reads: keys are
# paths of the node's metadata view (/host, /hosts, /env, /cluster...).
[template]
src = "@NAME@.conf.tmpl"
dest = "/etc/@NAME@/@NAME@.conf"
keys = ["/"]
mode = "0644"
`

const initTemplate = `# @NAME@ config of {{getv "/host/instance_id"}}, rendered by confd from the cluster
# metadata: edits here are overwritten on the next change.
role = {{getv "/host/role"}}
sid = {{getv "/host/sid"}}
listen = {{getv "/host/ip"}}:{{getv "/env/port"}}
greeting = {{getv "/env/greeting" ""}}
{{range $role := lsdir "/hosts"}}{{range $id := lsdir (printf "/hosts/%s" $role)}}server.{{getv (printf "/hosts/%s/%s/sid" $role $id)}} = {{getv (printf "/hosts/%s/%s/ip" $role $id)}}:{{getv "/env/port"}} # {{$role}}
{{end}}{{end}}`

const initReadme = "# @NAME@\n\n" +
	"An app package made with `hangar app init` (roles: @ROLES@). Edit it, then:\n\n" +
	"```sh\n" +
	"hangar app render .                 # the cluster spec and each config file, as a node would get them\n" +
	"hangar app render . --param env.greeting=hi --role @FIRST@\n" +
	"hangar app lint .                   # every check push makes\n" +
	"hangar app package .                # a .tar.gz to hand out\n" +
	"hangar app push .                   # store it in pilot\n" +
	"hangar cluster create @NAME@ --wait\n" +
	"```\n\n" +
	"- `config.json` declares the parameters a cluster is created with.\n" +
	"- `cluster.json.mustache` renders the cluster spec from them: roles, sizes, services.\n" +
	"- `confd/conf.d/*.toml` and `confd/templates/*` render each node's config files from the\n" +
	"  cluster metadata (`/host`, `/hosts`, `/env`, `/cluster`), again on every change.\n\n" +
	"Raise `version` in `package.json` before pushing a changed package; `hangar app list`\n" +
	"shows the versions pilot keeps and `hangar app delete @NAME@ VERSION` removes one no\n" +
	"cluster uses.\n"
