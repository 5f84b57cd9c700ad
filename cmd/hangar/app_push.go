package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

func newAppPushCmd(c *cli) *cobra.Command {
	var opts apppkg.LoadOptions
	cmd := &cobra.Command{
		Use:   "push DIR",
		Short: "Validate and store an app package",
		Long: fmt.Sprintf(`Pack an app package folder as a .tar.gz and push it to pilot, which
validates it and stores it as a new version of the app.

The archive holds the folder's files with paths relative to it, sorted, with
fixed times and owners, so an unchanged folder always gives the same archive.
Files and folders whose name starts with a dot (.git, .DS_Store) are left
out; symbolic links are refused. DIR may also be a ready .tar.gz (or .tgz) of
a package, which is sent as it is. A package archive may be at most %d MiB.

A package names itself in package.json. AppCenter packages have none: give
--name and --version, or name the folder NAME-VERSION (zookeeper-3.4.13)
and they are read off it.

Pilot answers with the app's name, version and roles, and with lint warnings:
fields accepted for AppCenter compatibility that have no effect here, and
parameters inserted into a command where the node's shell would act on their
value. An invalid package is rejected with an error naming the field.
'hangar app lint DIR' runs the same checks here, without pushing.`, apppkg.MaxArchiveBytes>>20),
		Example: `  # Push a package folder
  hangar app push ./examples/redis

  # Push an archive built elsewhere, and read the result in a script
  hangar app push redis-1.0.0.tar.gz -o json | jq -r .version

  # Push an AppCenter package, which has no package.json
  hangar app push ./appcenter-zookeeper --name zookeeper --version 3.4.13`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.appPush(cmd.Context(), args[0], opts)
		},
	}
	addPackageNameFlags(cmd, &opts)
	return cmd
}

// addPackageNameFlags adds --name and --version, which name a package that
// has no package.json.
func addPackageNameFlags(cmd *cobra.Command, opts *apppkg.LoadOptions) {
	cmd.Flags().StringVar(&opts.Name, "name", "", "the app's `name`, for a package without package.json (default: read off a NAME-VERSION folder name)")
	cmd.Flags().StringVar(&opts.Version, "version", "", "the app's `version`, for a package without package.json")
}

func (c *cli) appPush(ctx context.Context, dir string, opts apppkg.LoadOptions) error {
	archive, err := readPackage(dir)
	if err != nil {
		return err
	}
	opts = packageNames(dir, opts)
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	app, err := cl.apps.PushApp(ctx, &pilotv1.PushAppRequest{Archive: archive, Name: opts.Name, Version: opts.Version})
	if err != nil {
		return c.rpcError("push "+dir, err, hints{
			codes.ResourceExhausted: fmt.Sprintf("the archive is %.1f MiB: remove large files that the package does not need", float64(len(archive))/(1<<20)),
			codes.InvalidArgument:   "fix the package and push again",
		})
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, app)
	}
	fmt.Fprintf(c.stdout, "Pushed %s %s.\n", app.GetName(), app.GetVersion())
	writeAppSummary(c.stdout, app)
	fmt.Fprintf(c.stdout, "\nNext: see its parameters with `hangar app show %s`, deploy it with `hangar cluster create %s --wait`.\n", app.GetName(), app.GetName())
	return nil
}

// packageNames returns the name and version to send with a package: those
// given, or for a folder without package.json, those its name gives
// (NAME-VERSION); pilot checks them against the package.
func packageNames(path string, opts apppkg.LoadOptions) apppkg.LoadOptions {
	if opts.Name != "" || opts.Version != "" {
		return opts
	}
	if info, err := os.Stat(path); err != nil || !info.IsDir() {
		return opts
	}
	if _, err := os.Stat(filepath.Join(path, "package.json")); err == nil {
		return opts
	}
	return apppkg.FolderOptions(path)
}

// readPackage returns the archive to push for a folder or a ready .tar.gz.
func readPackage(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("app package: %w", err)
	}
	if info.IsDir() {
		return apppkg.ArchiveDir(path)
	}
	if strings.HasSuffix(path, ".tar.gz") || strings.HasSuffix(path, ".tgz") {
		if info.Size() > apppkg.MaxArchiveBytes {
			return nil, fmt.Errorf("app package %s: %d bytes, more than the %d a package archive may have", path, info.Size(), apppkg.MaxArchiveBytes)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("app package: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("app package %s: give a package folder or a .tar.gz of one", path)
}
