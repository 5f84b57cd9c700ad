package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newAppCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Push and inspect app packages",
		Long: `Work with app packages: the AppCenter-format folders (package.json,
config.json, cluster.json.mustache, confd/...) that describe how to deploy an
application as a cluster. Pilot stores every pushed version; clusters are
created from them with 'hangar cluster create'.`,
		Example: `  hangar app lint ./examples/redis
  hangar app push ./examples/redis
  hangar app list
  hangar app show redis`,
		RunE: groupRunE,
	}
	cmd.AddCommand(newAppInitCmd(c), newAppRenderCmd(c), newAppLintCmd(c), newAppPackageCmd(c), newAppPushCmd(c),
		newAppListCmd(c), newAppShowCmd(c), newAppDeleteCmd(c))
	return cmd
}

// writeAppSummary prints the header shared by `app push` and `app show`.
func writeAppSummary(w io.Writer, a *pilotv1.App) {
	fmt.Fprintf(w, "Name:         %s\n", a.GetName())
	fmt.Fprintf(w, "Version:      %s\n", a.GetVersion())
	if a.GetAppVersion() != "" {
		fmt.Fprintf(w, "App version:  %s\n", a.GetAppVersion())
	}
	if a.GetDescription() != "" {
		fmt.Fprintf(w, "Description:  %s\n", a.GetDescription())
	}
	fmt.Fprintf(w, "Roles:        %s\n", joinOrDash(a.GetRoles()))
	if t := formatTime(a.GetCreatedAt()); t != "" {
		fmt.Fprintf(w, "Pushed:       %s\n", t)
	}
	if len(a.GetWarnings()) > 0 {
		fmt.Fprintf(w, "Warnings (%d):\n", len(a.GetWarnings()))
		for _, warn := range a.GetWarnings() {
			fmt.Fprintf(w, "  - %s\n", warn)
		}
	}
}

func joinOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}
