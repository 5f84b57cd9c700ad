// Command hangar-provider-sim is the `sim` provider plugin: its instances
// are real frontgates and drones running inside this process, thousands of
// them on one machine, with a fake executor for their commands. Pilot
// starts it through hashicorp/go-plugin; it is not meant to be run by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

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
  cloud_socket       unix socket of a sim cloud holding the instances (below)

A sim cloud keeps instances that outlive the plugin, and pilot with it, as
a real cloud's machines do: run it as a process of its own and name its
socket in the runtime's config (the reconnect benchmark restarts pilot so):

  hangar-provider-sim cloud --socket /var/lib/hangar/sim/cloud.sock
  hangar runtime create sim1 --provider sim --zone sim-1 \
    --config root_dir=/var/lib/hangar/sim/sim1 \
    --config cloud_socket=/var/lib/hangar/sim/cloud.sock

The socket is made mode 0600: only its owner (pilot's user) may call it.

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
	if len(os.Args) > 1 && os.Args[1] == "cloud" {
		os.Exit(cloud(os.Args[2:]))
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
	if files, fit := sim.RaiseFileLimit(); fit < 10000 {
		log.Info("open file limit bounds the instances this plugin can hold", "open_file_limit", files, "instances", fit)
	}
	p := sim.NewPlugin(sim.New(sim.Config{Logger: log, Supervisor: supervise.Command(self)}))
	sdk.Serve(p, sdk.HCLog(log))
	p.Close()
}

// cloud runs a sim cloud until SIGINT or SIGTERM: the provider, serving
// on a unix socket, its instances stopped when it ends.
func cloud(args []string) int {
	fs := flag.NewFlagSet("hangar-provider-sim cloud", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: hangar-provider-sim cloud --socket PATH [--log-level LEVEL]

Runs a sim cloud: the sim provider's instances, in this process, served on
the unix socket PATH (mode 0600) to the plugins of runtimes whose config
names it as cloud_socket. It runs until SIGINT or SIGTERM, which stops every
instance. Logs are JSON on stderr.

Flags:
`)
		fs.PrintDefaults()
	}
	socket := fs.String("socket", "", "absolute path of the unix socket to serve on (required)")
	level := fs.String("log-level", "info", "the cloud's log level (debug, info, warn, error); its agents log at warn")
	pprofSocket := fs.String("pprof-socket", "", "serve Go's /debug/pprof/ on this unix socket (mode 0600), to profile thousands of agents: curl --unix-socket PATH http://sim/debug/pprof/heap")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "hangar-provider-sim cloud: --log-level %q: want debug, info, warn or error\n", *level)
		return 2
	}
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "hangar-provider-sim cloud: --socket is required (try --help)")
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	lis, err := sim.ListenCloud(*socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hangar-provider-sim cloud: --socket:", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	p := sim.New(sim.Config{Logger: log, Supervisor: supervise.Command(self)})
	defer p.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *pprofSocket != "" {
		plis, err := sim.ListenCloud(*pprofSocket)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hangar-provider-sim cloud: --pprof-socket:", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(plis) }()
		defer srv.Close()
	}
	files, fit := sim.RaiseFileLimit()
	log.Info("sim cloud serving", "socket", *socket, "pid", os.Getpid(), "open_file_limit", files, "instances_it_allows", fit)
	if err := sim.ServeCloud(ctx, lis, p); err != nil {
		log.Error("sim cloud failed", "err", err)
		return 1
	}
	log.Info("sim cloud stopping; its instances stop with it")
	return 0
}
