package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/atomicfile"
)

func newAppPackageCmd(c *cli) *cobra.Command {
	var opts apppkg.LoadOptions
	var out string
	cmd := &cobra.Command{
		Use:   "package DIR",
		Short: "Make the .tar.gz of a package folder that push accepts",
		Long: fmt.Sprintf(`Check a package folder as 'hangar app lint' does and write it as the
.tar.gz 'hangar app push' sends: the folder's files with paths relative to
it, sorted, with fixed times and owners, so an unchanged folder always gives
the same bytes. Files and folders whose name starts with a dot are left out;
symbolic links are refused. An archive may be at most %d MiB.

A package with errors is refused, naming the file and field, and nothing is
written; lint warnings are printed and do not stop it. The archive is named
NAME-VERSION.tar.gz in the current folder unless --out names it; an existing
file is replaced. (-o is the output format, as for every command.)`, apppkg.MaxArchiveBytes>>20),
		Example: `  hangar app package ./myapp
  hangar app package ./myapp --out dist/myapp.tar.gz
  hangar app push dist/myapp.tar.gz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.appPackage(args[0], out, opts)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the archive to `FILE.tar.gz` (default: NAME-VERSION.tar.gz)")
	addPackageNameFlags(cmd, &opts)
	return cmd
}

func (c *cli) appPackage(dir, out string, opts apppkg.LoadOptions) error {
	if info, err := os.Stat(dir); err != nil {
		return fmt.Errorf("package %s: %w", dir, err)
	} else if !info.IsDir() {
		return fmt.Errorf("package %s: give the package's folder (an archive is already packaged)", dir)
	}
	checked, err := checkPackage(dir, opts)
	if err != nil {
		return fmt.Errorf("package %s: %w", dir, err)
	}
	app := checked.app
	if out == "" {
		out = app.GetName() + "-" + app.GetVersion() + ".tar.gz"
	}
	if err := atomicfile.Write(out, checked.archive, 0o644); err != nil {
		return fmt.Errorf("package %s: %w", dir, err)
	}
	if c.format == formatJSON {
		appJSON, err := marshalJSON(app)
		if err != nil {
			return err
		}
		return writeJSONValue(c.stdout, map[string]any{"file": out, "bytes": len(checked.archive), "app": json.RawMessage(appJSON)})
	}
	abs, _ := filepath.Abs(out)
	fmt.Fprintf(c.stdout, "Wrote %s (%d bytes).\n", abs, len(checked.archive))
	writeAppSummary(c.stdout, app)
	fmt.Fprintf(c.stdout, "\nNext: `hangar app push %s`.\n", out)
	return nil
}
