package main

import (
	"bytes"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

func newAppLintCmd(c *cli) *cobra.Command {
	var opts apppkg.LoadOptions
	cmd := &cobra.Command{
		Use:   "lint DIR",
		Short: "Check an app package here, without pushing it",
		Long: `Check an app package folder (or a .tar.gz of one) as pilot checks it when it
is pushed, without contacting pilot: every file is parsed, cluster.json is
rendered with the default parameters, and the confd files are checked as the
drones check them. An invalid package fails with an error naming the file
and field.

The warnings are those 'hangar app push' prints: fields accepted for
AppCenter compatibility that have no effect here, and parameters inserted
into a command (a service's cmd, a health check...) where the node's shell
would act on their value, naming the template line. The exit status is 0
when the package is valid, warnings or not.`,
		Example: `  hangar app lint ./examples/redis
  hangar app lint redis-1.0.0.tar.gz -o json | jq -r '.warnings[]'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.appLint(args[0], opts)
		},
	}
	addPackageNameFlags(cmd, &opts)
	return cmd
}

func (c *cli) appLint(dir string, opts apppkg.LoadOptions) error {
	checked, err := checkPackage(dir, opts)
	if err != nil {
		return fmt.Errorf("lint %s: %w", dir, err)
	}
	app := checked.app
	if c.format == formatJSON {
		return writeJSON(c.stdout, app)
	}
	fmt.Fprintf(c.stdout, "%s %s is a valid package.\n", app.GetName(), app.GetVersion())
	writeAppSummary(c.stdout, app)
	return nil
}

// checkedPackage is a package that passed lint's checks.
type checkedPackage struct {
	archive []byte // what push sends
	pkg     *apppkg.Package
	app     *pilotv1.App // as pilot would store it
}

// checkPackage runs on a folder or a .tar.gz the checks pilot makes when the
// package is pushed: it loads it from the archive push would send (loading
// renders cluster.json with the defaults and checks every file).
func checkPackage(path string, opts apppkg.LoadOptions) (*checkedPackage, error) {
	archive, err := readPackage(path)
	if err != nil {
		return nil, err
	}
	pkg, err := apppkg.LoadArchiveWith(bytes.NewReader(archive), packageNames(path, opts))
	if err != nil {
		return nil, err
	}
	app := &pilotv1.App{
		Name:        pkg.Meta.Name,
		Version:     pkg.Meta.Version,
		AppVersion:  pkg.Meta.AppVersion,
		Description: pkg.Meta.Description,
		Warnings:    pkg.Warnings,
		Roles:       pkg.Roles,
	}
	return &checkedPackage{archive: archive, pkg: pkg, app: app}, nil
}
