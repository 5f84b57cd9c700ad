package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newImageListCmd(c *cli) *cobra.Command {
	var app string
	cmd := &cobra.Command{
		Use:     "list [--app APP]",
		Aliases: []string{"ls"},
		Short:   "List the image map",
		Long: `List the image map: app, version, role ("-" for an app whose one node entry
has no role), runtime and image.`,
		Example: `  hangar image list
  hangar image list --app redis -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.imageList(cmd.Context(), app)
		},
	}
	cmd.Flags().StringVar(&app, "app", "", "only this app's entries")
	return cmd
}

func (c *cli) imageList(ctx context.Context, app string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.apps.ListImages(ctx, &pilotv1.ListImagesRequest{App: app})
	if err != nil {
		return c.rpcError("list images", err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	if len(resp.GetImages()) == 0 {
		fmt.Fprintln(c.stdout, "The image map is empty: roles run the image their cluster.json names. `hangar image set` adds an entry.")
		return nil
	}
	tw := newTable(c.stdout)
	row(tw, "APP", "VERSION", "ROLE", "RUNTIME", "IMAGE", "SET")
	for _, m := range resp.GetImages() {
		row(tw, m.GetApp(), m.GetVersion(), roleOrDash(m.GetRole()), m.GetRuntime(), m.GetImage(), formatTime(m.GetUpdatedAt()))
	}
	return tw.Flush()
}
