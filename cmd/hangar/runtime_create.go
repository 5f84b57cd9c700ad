package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

type runtimeCreateOptions struct {
	provider string
	zone     string
	config   []string
}

func newRuntimeCreateCmd(c *cli) *cobra.Command {
	o := runtimeCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create ID --provider PROVIDER",
		Short: "Create a runtime",
		Long: `Create a runtime: a named place for clusters, served by a provider plugin.

ID is the name clusters refer to (--runtime ID). --provider names the plugin:
"local" (instances are processes on pilot's machine), "docker" (containers;
the Docker daemon must run), "sim" (simulated instances for tests), or a
cloud's plugin. --zone picks the provider's zone, and each --config KEY=VALUE
sets one of the provider's settings (repeat it for several). Pilot checks the
settings with the provider before it stores the runtime.

A provider whose instances run on pilot's own machine ("local") is for
platform admins only (admins of tenant "default"). Its directories must lie
outside pilot's data directory and outside every other runtime's root_dir.
The local provider's settings (all optional through pilot):

  root_dir    where its state and instance directories live (default: next to
              pilot's data directory). As root, instances run as users of
              their own, so every directory above it must be searchable by
              others (o+x).
  bin_dir     the drone and frontgate binaries, and what apps call (default:
              pilot's plugin directory)
  ranges_dir  where it claims address ranges; writable by pilot's user only

The docker provider (platform admins only too: it holds the Docker socket)
takes host, uplink_network, subnet_pool, frontgate_image and helper_image,
all optional; pilot must listen where a frontgate can dial it from the
uplink, such as docker0's address (docs/docker.md).`,
		Example: `  # A second local runtime (platform admins), in a directory of its own
  hangar runtime create local2 --provider local --config root_dir=/srv/hangar/local2

  # Containers on this machine's Docker
  hangar runtime create docker1 --provider docker --zone docker

  # A provider with settings
  hangar runtime create cloud1 --provider mycloud --zone eu-1 \
      --config region=eu --config network=10.1.0.0/16`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runtimeCreate(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.provider, "provider", "", "provider plugin: local, docker, sim, ... (required)")
	f.StringVar(&o.zone, "zone", "", "the provider's zone")
	// StringArray, not StringSlice: a value may contain commas.
	f.StringArrayVar(&o.config, "config", nil, "provider setting KEY=VALUE (repeatable)")
	_ = cmd.MarkFlagRequired("provider")
	return cmd
}

func (c *cli) runtimeCreate(ctx context.Context, id string, o runtimeCreateOptions) error {
	config, err := parseKeyValues("--config", "--config region=eu", o.config)
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	rt, err := cl.runtimes.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{
		Id: id, Provider: o.provider, Zone: o.zone, Config: config,
	})
	if err != nil {
		return c.rpcError("create runtime "+id, err, hints{
			codes.AlreadyExists:    "see it with `hangar runtime list`, or pick another ID",
			codes.PermissionDenied: "`hangar user whoami` shows your tenant and role",
		})
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, rt)
	}
	fmt.Fprintf(c.stdout, "Runtime %s created (provider %s", rt.GetId(), rt.GetProvider())
	if rt.GetZone() != "" {
		fmt.Fprintf(c.stdout, ", zone %s", rt.GetZone())
	}
	fmt.Fprintf(c.stdout, ").\nDeploy on it with `hangar cluster create APP --runtime %s`.\n", rt.GetId())
	return nil
}
