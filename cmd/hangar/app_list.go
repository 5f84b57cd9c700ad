package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newAppListCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the app versions pilot stores, and the clusters using each",
		Long: `List every app version pushed to pilot, the versions of an app side by
side (oldest first): name, version, the application's own version, its roles,
the clusters that use it and when it was pushed.

A cluster uses a version when it runs it (whatever its state, one being
deleted too), when its running upgrade or rollback leaves it, and when its
rollback would return to it. A version no cluster uses can be deleted with
'hangar app delete NAME VERSION'.`,
		Example: `  hangar app list
  hangar app list -o json | jq -r '.apps[] | .name + " " + .version'
  hangar app list -o json | jq -r '.users[] | select(.name == "redis") | .clusterIds[]'`,
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
	apps := resp.GetApps()
	sort.SliceStable(apps, func(i, j int) bool {
		a, b := apps[i], apps[j]
		if a.GetName() != b.GetName() {
			return a.GetName() < b.GetName()
		}
		if ta, tb := a.GetCreatedAt().AsTime(), b.GetCreatedAt().AsTime(); !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return a.GetVersion() < b.GetVersion()
	})
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	if len(apps) == 0 {
		fmt.Fprintln(c.stdout, "No apps yet. Push one with `hangar app push DIR`.")
		return nil
	}
	users := map[string][]string{}
	for _, u := range resp.GetUsers() {
		users[u.GetName()+"\x00"+u.GetVersion()] = u.GetClusterIds()
	}
	tw := newTable(c.stdout)
	row(tw, "NAME", "VERSION", "APP VERSION", "ROLES", "USED BY", "WARNINGS", "PUSHED")
	for _, a := range apps {
		row(tw, a.GetName(), a.GetVersion(), a.GetAppVersion(), strings.Join(a.GetRoles(), ","),
			joinOrDash(users[a.GetName()+"\x00"+a.GetVersion()]), fmt.Sprint(len(a.GetWarnings())), formatTime(a.GetCreatedAt()))
	}
	return tw.Flush()
}
