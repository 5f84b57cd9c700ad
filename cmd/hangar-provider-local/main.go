// Command hangar-provider-local is the `local` provider plugin: instances are
// processes on this host, each with its own 127.X.Y.Z address. Pilot starts
// it through hashicorp/go-plugin; it is not meant to be run by hand.
package main

import (
	"os"

	"github.com/hangarhq/hangar/providers/local"
	"github.com/hangarhq/hangar/providers/sdk"
)

const usage = `hangar-provider-local: the Hangar "local" provider plugin (version %s).

This program is started by pilot, not by hand: pilot launches it as a
hashicorp/go-plugin subprocess and talks to it over gRPC. Run without pilot's
handshake it refuses to start.

What it does: networks are 127.X.Y.0/24 ranges on the loopback interface and
instances are drone (or, for image "frontgate", frontgate) processes on this
host, each with its own address and directory. Configure it through the
runtime's settings in pilot:

  root_dir    (required) absolute directory for its state and instance directories
  bin_dir     (required) absolute directory holding the drone and frontgate binaries
  ranges_dir  (optional) directory, writable by this user only, where address
              ranges are claimed host-wide (default: /run/hangar/local-ranges
              as root, else $XDG_RUNTIME_DIR/hangar-local-ranges or
              $TMPDIR/hangar-local-ranges-UID)

Instances never run with this plugin's privileges: as root it runs each one
as an unprivileged user of its own (uids from 1879048192) owning its
directory, so root_dir's and bin_dir's parents must be searchable by others
(o+x); otherwise it confines each one with Landlock to its directory, the
binaries and read-only system directories. Without root or Landlock it
starts no instance.

See docs/providers.md.
`

func main() {
	// The provider starts instances through this same binary when it does
	// not run as root: it then only confines itself and execs the agent.
	local.MaybeLaunch()
	if len(os.Args) > 1 {
		os.Exit(sdk.HandleArgs("hangar-provider-local", local.Version, usage, os.Args[1:], os.Stdout, os.Stderr))
	}
	// Capture the real stderr now: Serve replaces os.Stderr with a pipe.
	log := sdk.NewPluginLogger(os.Stderr, nil)
	p := local.New(local.Config{Logger: log})
	sdk.Serve(p, sdk.HCLog(log))
	_ = p.Close()
}
