package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newImageSetCmd(c *cli) *cobra.Command {
	var t imageTarget
	cmd := &cobra.Command{
		Use:   "set --app APP --version VERSION [--role ROLE] --runtime RUNTIME IMAGE",
		Short: "Set the image a role runs on a runtime",
		Long: `Set the image that instances of a role of an app version run on a runtime.
The app version must have been pushed with that role, and the runtime must
exist. Clusters created (and nodes added) from then on take it; running
nodes keep the image they were created with.`,
		Example: `  hangar image set --app zookeeper --version 3.4.13 --runtime local zk-3.4.13
  hangar image set --app redis --version 1.2.0 --role replica --runtime docker1 hangar/redis:7.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := t.check(); err != nil {
				return err
			}
			return c.imageSet(cmd.Context(), t, args[0])
		},
	}
	t.flags(cmd)
	return cmd
}

func (c *cli) imageSet(ctx context.Context, t imageTarget, image string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	m, err := cl.apps.SetImage(ctx, &pilotv1.SetImageRequest{App: t.app, Version: t.version, Role: t.role, Runtime: t.runtime, Image: image})
	if err != nil {
		return c.rpcError("set image", err, hints{
			codes.NotFound:        "`hangar app list` and `hangar runtime list` show what exists",
			codes.InvalidArgument: "`hangar app show " + t.app + " --version " + t.version + "` lists the app's roles",
		})
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, m)
	}
	fmt.Fprintf(c.stdout, "Role %s of %s %s runs %s on runtime %s.\n", roleOrDash(m.GetRole()), m.GetApp(), m.GetVersion(), m.GetImage(), m.GetRuntime())
	return nil
}

func roleOrDash(role string) string {
	if role == "" {
		return "-"
	}
	return role
}
