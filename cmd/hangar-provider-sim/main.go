// Command hangar-provider-sim is the `sim` provider plugin: its instances
// are real frontgates and drones running inside this process, thousands of
// them on one machine, with a fake executor for their commands. Pilot
// starts it through hashicorp/go-plugin; it is not meant to be run by hand.
package main

import (
	"os"

	"github.com/hangarhq/hangar/drone/executor/supervise"
	"github.com/hangarhq/hangar/providers/sdk"
	"github.com/hangarhq/hangar/providers/sim"
)

const usage = `hangar-provider-sim: the Hangar "sim" provider plugin (version %s).

This program is started by pilot, not by hand: pilot launches it as a
hashicorp/go-plugin subprocess and talks to it over gRPC.

What it does: every instance is a real drone (or, for image "frontgate", a
real frontgate with its own etcd) running in this process, with its own
identity, certificate and stream, rendering its config files into its own
directory. Networks are /20 ranges of 127.0.0.0/8. Lifecycle commands go to
a fake executor unless the runtime asks for real execution. Instances live
as long as this process: a restarted plugin has none. Runtime settings:

  root_dir           (required) absolute directory of the instances' directories
  exec               "fake" (default) or "real" (run commands with /bin/sh)
  exec_latency       how long each fake command takes (Go duration, default 0s)
  exec_failure_rate  share of fake commands that fail, 0 to 1 (default 0)
  exec_exit_code     their exit code, 1-255 (default 1)
  exec_output_bytes  size of each fake command's output (default 0)
  run_latency        how long each RunInstance takes (default 0s)
  run_failure_rate   share of RunInstance calls that fail, 0 to 1 (default 0)

Example:
  hangar runtime create sim1 --provider sim --zone sim-1 \
    --config root_dir=/var/lib/hangar/sim --config exec_latency=20ms

See docs/providers.md (the sim provider) and docs/performance.md.
`

func main() {
	// With exec = "real" each command runs under a supervisor:
	// hangar-supervise beside this binary, else this binary again.
	if len(os.Args) > 1 && os.Args[1] == supervise.Arg {
		os.Exit(supervise.Main(os.Args[2:]))
	}
	if len(os.Args) > 1 {
		os.Exit(sdk.HandleArgs("hangar-provider-sim", sim.Version, usage, os.Args[1:], os.Stdout, os.Stderr))
	}
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	// Capture the real stderr now: Serve replaces os.Stderr with a pipe.
	log := sdk.NewPluginLogger(os.Stderr, nil)
	p := sim.New(sim.Config{Logger: log, Supervisor: supervise.Command(self)})
	sdk.Serve(p, sdk.HCLog(log))
	p.Close()
}
