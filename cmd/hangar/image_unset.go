package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newImageUnsetCmd(c *cli) *cobra.Command {
	var t imageTarget
	cmd := &cobra.Command{
		Use:   "unset --app APP --version VERSION [--role ROLE] --runtime RUNTIME",
		Short: "Remove an entry of the image map",
		Long: `Remove the image set for a role of an app version on a runtime: the role
then runs the image its cluster.json names. Running nodes keep theirs.`,
		Example: `  hangar image unset --app redis --version 1.2.0 --role replica --runtime docker1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(); err != nil {
				return err
			}
			return c.imageUnset(cmd.Context(), t)
		},
	}
	t.flags(cmd)
	return cmd
}

func (c *cli) imageUnset(ctx context.Context, t imageTarget) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := cl.apps.UnsetImage(ctx, &pilotv1.UnsetImageRequest{App: t.app, Version: t.version, Role: t.role, Runtime: t.runtime}); err != nil {
		return c.rpcError("unset image", err, hints{codes.NotFound: "`hangar image list` shows the map"})
	}
	fmt.Fprintf(c.stdout, "Role %s of %s %s on runtime %s runs the image its cluster.json names.\n", roleOrDash(t.role), t.app, t.version, t.runtime)
	return nil
}
