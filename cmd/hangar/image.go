package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newImageCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Map an app's roles to the images their instances run, per runtime",
		Long: `Work with the image map: for each app version, role and runtime, the image
the role's instances run there (a cloud image id, a Docker image, a folder
of the local runtime's images_dir). When a cluster is created, or a role
scaled out, each role takes its image from the map, else from its
container.image in cluster.json. A runtime whose instances need an image
refuses a role that has none, or an image it lacks, before anything is
created, naming app, version, role and runtime.

An app whose one node entry has no role (like AppCenter's ZooKeeper) is
mapped without --role.`,
		Example: `  hangar image set --app redis --version 1.2.0 --role master --runtime aws-east ami-0abc123
  hangar image list --app redis
  hangar image unset --app redis --version 1.2.0 --role master --runtime aws-east`,
		RunE: groupRunE,
	}
	cmd.AddCommand(newImageSetCmd(c), newImageListCmd(c), newImageUnsetCmd(c))
	return cmd
}

// imageTarget is what names an entry of the image map.
type imageTarget struct {
	app, version, role, runtime string
}

func (t *imageTarget) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.app, "app", "", "the app (required)")
	f.StringVar(&t.version, "version", "", "the app's version (required)")
	f.StringVar(&t.role, "role", "", "the role (leave it out for an app whose one node entry has no role)")
	f.StringVar(&t.runtime, "runtime", "", "the runtime (required)")
}

func (t imageTarget) check() error {
	for _, f := range []struct{ name, v string }{{"app", t.app}, {"version", t.version}, {"runtime", t.runtime}} {
		if f.v == "" {
			return fmt.Errorf("--%s is required", f.name)
		}
	}
	return nil
}
