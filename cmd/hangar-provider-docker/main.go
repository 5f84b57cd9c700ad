// Command hangar-provider-docker is the `docker` provider plugin: networks
// are internal Docker networks and instances are containers whose
// entrypoint is the drone. Pilot starts it through hashicorp/go-plugin; it
// is not meant to be run by hand.
package main

import (
	"os"

	"github.com/hangarhq/hangar/providers/docker"
	"github.com/hangarhq/hangar/providers/sdk"
)

const usage = `hangar-provider-docker: the Hangar "docker" provider plugin (version %s).

This program is started by pilot, not by hand: pilot launches it as a
hashicorp/go-plugin subprocess and talks to it over gRPC. Run without pilot's
handshake it refuses to start.

What it does: a network is an internal Docker network (its containers reach
one another and nothing else) with a /24 of subnet_pool; an instance is a
container of the role's image, the drone its entrypoint and init, its cpu
and memory applied as limits, its data volume a Docker volume at the role's
mount points. A network's frontgate also joins the uplink network, from
which it dials pilot: pilot must listen on an address reachable from there,
such as the uplink's gateway (docker network inspect bridge), and advertise
it (pilot --listen 172.17.0.1:7443 --advertise-address 172.17.0.1:7443).
Everything it creates carries labels (hangar.docker/runtime, and
hangar/cluster, hangar/node for instances), so nothing is orphaned.

Runtime settings (all optional):

  host            Docker Engine endpoint (default: $DOCKER_HOST, else the
                  local socket unix:///var/run/docker.sock)
  uplink_network  network frontgates dial pilot from (default: bridge)
  subnet_pool     range networks take their /24 from (default: 10.213.0.0/16)
  frontgate_image image of frontgate instances (default: hangar/frontgate:latest)

Images are built by 'make images' (docs/images.md).

See docs/providers.md.
`

func main() {
	if len(os.Args) > 1 {
		os.Exit(sdk.HandleArgs("hangar-provider-docker", docker.Version, usage, os.Args[1:], os.Stdout, os.Stderr))
	}
	// Capture the real stderr now: Serve replaces os.Stderr with a pipe.
	log := sdk.NewPluginLogger(os.Stderr, nil)
	p := docker.New(docker.Config{Logger: log})
	sdk.Serve(p, sdk.HCLog(log))
	_ = p.Close()
}
