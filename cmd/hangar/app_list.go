package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newAppListCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the app versions pilot stores",
		Long: `List every app version pushed to pilot: name, version, the application's
own version, its roles and when it was pushed.`,
		Example: `  hangar app list
  hangar app list -o json | jq -r '.apps[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.appList(cmd.Context())
		},
	}
}

func (c *cli) appList(ctx context.Context) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.apps.ListApps(ctx, &pilotv1.ListAppsRequest{})
	if err != nil {
		return c.rpcError("list apps", err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	if len(resp.GetApps()) == 0 {
		fmt.Fprintln(c.stdout, "No apps yet. Push one with `hangar app push DIR`.")
		return nil
	}
	tw := newTable(c.stdout)
	row(tw, "NAME", "VERSION", "APP VERSION", "ROLES", "WARNINGS", "PUSHED")
	for _, a := range resp.GetApps() {
		row(tw, a.GetName(), a.GetVersion(), a.GetAppVersion(), strings.Join(a.GetRoles(), ","),
			fmt.Sprint(len(a.GetWarnings())), formatTime(a.GetCreatedAt()))
	}
	return tw.Flush()
}
